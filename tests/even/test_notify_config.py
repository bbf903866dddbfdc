"""`notifications:` in even.yaml: URLs, events, names and secret files are checked at load."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml

from even.config import load_settings
from even.errors import ConfigError
from even.notify.settings import InvalidSecret, check_url, is_loopback, parse_secret

KEY = base64.b64encode(os.urandom(32)).decode()


def _config(tmp_path: Path, notifications: list[dict[str, object]]) -> Path:
    (tmp_path / "hook_secret").write_text(f"whsec_{KEY}\n")
    path = tmp_path / "even.yaml"
    path.write_text(yaml.safe_dump({"notifications": notifications}))
    return path


def _one(**fields: object) -> dict[str, object]:
    item: dict[str, object] = {
        "name": "security",
        "url": "https://hooks.example.com/even",
        "events": ["access.granted", "access.emergency"],
        "secret_file": "hook_secret",
    }
    item.update(fields)
    return item


def test_a_valid_subscription_loads_with_its_secret_resolved_against_the_config_dir(
    tmp_path: Path,
) -> None:
    settings = load_settings(_config(tmp_path, [_one(), _one(name="chat", format="slack")]))
    assert [n.name for n in settings.notifications] == ["security", "chat"]
    assert settings.path("hook_secret") == tmp_path / "hook_secret"


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/x",
        "http://127.0.0.1:8080/x",
        "http://127.200.3.4/x",
        "http://[::1]:9000/x",
        "http://localhost/x",
        "http://LOCALHOST:1/x",
    ],
)
def test_https_or_plain_http_to_loopback_is_accepted(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "http://127.0.0.1.evil.example/x",  # a prefix of a loopback address is not one
        "http://localhost.evil.example/x",
        "http://127.0.0.1@evil.example/x",  # userinfo, then the real host
        "http://10.0.0.1/x",
        "http://[::2]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "ftp://127.0.0.1/x",
        "https:///no-host",
        "https://hooks.example.com:99999/x",
        "https://hooks.example.com/x y",
        "https://hooks.example.com/x\n",
        "127.0.0.1:80",
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_url(url)


def test_loopback_is_parsed_not_prefixed() -> None:
    assert is_loopback("127.255.255.254")
    assert not is_loopback("127.0.0.1x")
    assert not is_loopback("128.0.0.1")
    assert is_loopback("::1")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"url": "http://hooks.example.com/x"}, "https"),
        ({"events": ["access.granted", "access.exploded"]}, "access.exploded"),
        ({"events": []}, "events"),
        ({"events": ["access.granted", "access.granted"]}, "twice"),
        ({"format": "teams"}, "format"),
        ({"secret_file": None}, "secret_file"),
        ({"name": "Bad Name"}, "name"),
        ({"name": "ok\n"}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_subscriptions_stop_the_load_with_a_clear_error(
    tmp_path: Path, fields: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(_config(tmp_path, [_one(**fields)]))


def test_names_are_unique(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(_config(tmp_path, [_one(), _one(url="https://other.example.com/")]))


def test_a_missing_or_bad_secret_file_stops_the_load_without_quoting_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(_config(tmp_path, [_one(secret_file="nowhere")]))
    (tmp_path / "bad").write_text("whsec_not*base64*at*all-sekrit")
    with pytest.raises(ConfigError, match="not valid base64") as caught:
        load_settings(_config(tmp_path, [_one(secret_file="bad")]))
    assert "sekrit" not in str(caught.value)
    (tmp_path / "short").write_text(base64.b64encode(b"x" * 8).decode())
    with pytest.raises(ConfigError, match="24 to 64 bytes"):
        load_settings(_config(tmp_path, [_one(secret_file="short")]))


def test_slack_needs_no_secret(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path, [_one(format="slack", secret_file=None)]))
    assert settings.notifications[0].secret_file is None


def test_secret_prefix_and_padding() -> None:
    raw = os.urandom(32)
    assert parse_secret("whsec_" + base64.b64encode(raw).decode()) == raw
    assert parse_secret(base64.b64encode(raw).decode() + "\n") == raw
    with pytest.raises(InvalidSecret):
        parse_secret("whsec_")
