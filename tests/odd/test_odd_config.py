"""/etc/odd.conf: which file is read and what it may contain."""

from pathlib import Path

import pytest

import odd.config
from odd.config import OddConfig, load_config, parse_config, resolve_config_path
from odd.errors import ConfigError


def test_hostname_is_read() -> None:
    assert parse_config("[odd]\nhostname = host-1.even.test\n").hostname == "host-1.even.test"


def test_empty_file_and_empty_section_mean_defaults() -> None:
    assert parse_config("") == OddConfig()
    assert parse_config("[odd]\n") == OddConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[odd]\nhostnme = a.example.org\n", "unknown key 'hostnme'"),
        ("[Odd]\nhostname = a.example.org\n", r"unknown section \[Odd\]"),
        ("[odd]\nhostname = localhost\n", "names every machine"),
        ("[odd]\nhostname = web1\n", "not fully qualified"),
        ("[odd]\nhostname =\n", "empty"),
        ("[odd]\nhostname = a.example.org\nhostname = b.example.org\n", "already exists"),
        ("hostname = a.example.org\n", "section"),
    ],
)
def test_invalid_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, source="/etc/odd.conf")


def test_error_names_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^/x/odd\.conf: "):
        parse_config("[odd]\nhostname = localhost\n", source="/x/odd.conf")


def test_path_precedence() -> None:
    env = {"ODD_CONFIG": "/from/env"}
    assert resolve_config_path("/explicit", env) == (Path("/explicit"), True)
    assert resolve_config_path(None, env) == (Path("/from/env"), True)
    assert resolve_config_path(None, {}) == (Path("/etc/odd.conf"), False)
    assert resolve_config_path(None, {"ODD_CONFIG": ""}) == (Path("/etc/odd.conf"), False)


def test_missing_default_file_is_an_empty_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(odd.config, "DEFAULT_CONFIG_PATH", tmp_path / "absent.conf")
    assert load_config(None, {}) == OddConfig()


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.conf", {})
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(None, {"ODD_CONFIG": str(tmp_path / "absent.conf")})


def test_load_from_env(tmp_path: Path) -> None:
    path = tmp_path / "odd.conf"
    path.write_text("[odd]\nhostname = host-1.even.test\n", encoding="utf-8")
    assert load_config(None, {"ODD_CONFIG": str(path)}).hostname == "host-1.even.test"


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path, {})  # a directory
    binary = tmp_path / "odd.conf"
    binary.write_bytes(b"[odd]\nhostname = \xff\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(binary, {})
