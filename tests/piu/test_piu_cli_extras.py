"""config show/set/unset, shell completion, colour, -v redaction, --watch, the help text."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from piu_fakes import REQUEST_ID, TOKEN, Piu

from piu import render

ITEM = {
    "id": REQUEST_ID,
    "status": "GRANTED",
    "username": "alice",
    "login": "alice",
    "hostname": "db-1.prod.example.org",
    "mode": "certificate",
    "reason": "INC-1",
}


# config


def test_config_set_writes_owner_only_yaml_and_show_reads_it(run: Piu) -> None:
    assert run("config", "set", "issuer", "https://idp.example.com/").exit_code == 0
    result = run("config", "set", "bastion", "odd-eu")
    assert result.exit_code == 0, result.output
    path = run.config_dir / "piu.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text()) == {
        "bastion": "odd-eu",
        "issuer": "https://idp.example.com",
    }
    shown = run("config", "show")
    assert shown.exit_code == 0, shown.output
    lines = {line.split()[0]: line for line in shown.stdout.splitlines()}
    assert "odd-eu" in lines["bastion"] and f"(file {path})" in lines["bastion"]
    assert "(env PIU_EVEN_URL)" in lines["even_url"]
    assert "piu  (default)" in lines["client_id"]
    assert "from PIU_TOKEN (value hidden)" in lines["token"]
    assert TOKEN not in shown.output


def test_config_show_json_and_login_state(run: Piu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIU_TOKEN")
    out = json.loads(run("config", "show", "-o", "json").stdout)
    settings = {entry["key"]: entry for entry in out["settings"]}
    assert settings["scope"] == {
        "key": "scope",
        "value": "openid offline_access",
        "source": "default",
    }
    assert out["token"] == "not logged in"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("even_url", "http://even.example.com"),  # plain http off loopback
        ("issuer", "ftp://idp"),
        ("bastion", "odd eu"),
        ("resource", "not a uri"),
        ("scope", "openid  offline_access"),
        ("cacert", "/nonexistent/ca.pem"),
        ("client_id", "a\nb"),
    ],
)
def test_config_set_checks_values(run: Piu, key: str, value: str) -> None:
    result = run("config", "set", key, value)
    assert result.exit_code == 2, result.output
    assert not (run.config_dir / "piu.yaml").exists()


def test_config_set_unknown_key_is_2(run: Piu) -> None:
    assert run("config", "set", "even-url", "https://x.example").exit_code == 2


def test_config_set_cacert_is_made_absolute_and_unset_removes(
    run: Piu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ca.pem").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert run("config", "set", "cacert", "ca.pem").exit_code == 0
    path = run.config_dir / "piu.yaml"
    assert yaml.safe_load(path.read_text()) == {"cacert": str(tmp_path / "ca.pem")}
    assert run("config", "unset", "cacert").exit_code == 0
    assert path.read_text() == ""


def test_bad_env_value_names_its_source(run: Piu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIU_ISSUER", "http://idp.example.com")
    result = run("whoami")
    assert result.exit_code == 2
    assert "issuer from env PIU_ISSUER: refusing plain http" in result.stderr


# completion


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F"), ("zsh", "#compdef piu"), ("fish", "complete --no-files")],
)
def test_completion_scripts(run: Piu, shell: str, marker: str) -> None:
    result = run("completion", shell)
    assert result.exit_code == 0
    assert marker in result.stdout
    assert "_PIU_COMPLETE" in result.stdout


def test_completion_answers_commands_and_held_hosts(run: Piu) -> None:
    assert run("ssh", "db-1.prod.example.org", "-r", "INC-1 x").exit_code == 0
    env = {
        **os.environ,
        "_PIU_COMPLETE": "bash_complete",
        "COMP_WORDS": "piu ssh db",
        "COMP_CWORD": "2",
    }
    out = subprocess.run(
        [sys.executable, "-m", "piu"], env=env, capture_output=True, text=True, check=False
    )
    assert "plain,db-1.prod.example.org" in out.stdout.splitlines()
    env.update(COMP_WORDS="piu lo", COMP_CWORD="1")
    out = subprocess.run(
        [sys.executable, "-m", "piu"], env=env, capture_output=True, text=True, check=False
    )
    assert {"plain,login", "plain,logout"} <= set(out.stdout.splitlines())


# colour


def test_list_colours_status_only_in_a_terminal(run: Piu, monkeypatch: pytest.MonkeyPatch) -> None:
    run.fake.list_items = [
        ITEM,
        {**ITEM, "status": "DENIED"},
        {**ITEM, "status": "EXPIRED", "reason": "\x1b[31mfake"},
    ]
    plain = run("list-access").stdout
    assert "\x1b[" not in plain
    run.tty_out = True
    coloured = run("list-access").stdout
    assert f"{render.GREEN}GRANTED{render.RESET}" in coloured
    assert f"{render.RED}DENIED {render.RESET}" in coloured  # padded inside the colour
    assert f"{render.DIM}EXPIRED{render.RESET}" in coloured
    assert r"\x1b[31mfake" in coloured  # the server's escape codes stay escaped
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in run("list-access").stdout
    monkeypatch.delenv("NO_COLOR")
    assert "\x1b[" not in run("list-access", "-o", "tsv").stdout


def test_watch_refreshes_until_ctrl_c(run: Piu) -> None:
    run.fake.list_items = [ITEM]
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    from click.testing import CliRunner
    from piu_fakes import Runtime, cli

    runtime = Runtime(transport=run.fake.transport(), sleep=sleep)
    result = CliRunner().invoke(cli, ["list-access", "--watch"], obj=runtime)
    assert result.exit_code == 0, result.output
    assert result.stdout.count(REQUEST_ID) == 2
    assert calls == [5.0, 5.0]


# -v


def test_verbose_logs_requests_but_never_the_token(run: Piu) -> None:
    result = run("-v", "db-1.prod.example.org", "INC-1 debug")
    assert result.exit_code == 0, result.output
    assert "piu: debug: > POST https://even.example.com/v1/access-requests" in result.stderr
    assert "(Authorization: Bearer [redacted])" in result.stderr
    assert "piu: debug: < 201 POST" in result.stderr
    assert TOKEN not in result.output
    assert "secret-token-value" not in result.output


def test_redact_masks_token_shapes_and_registered_secrets() -> None:
    from piu.debug import add_secret, redact

    add_secret("opaque-secret-42")
    text = (
        'Authorization: Bearer abc.def "refresh_token": "r-1" access_token=xyz&a=1 '
        "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.sig opaque-secret-42"
    )
    masked = redact(text)
    for secret in ("abc.def", "r-1", "xyz", "eyJhbGci", "opaque-secret-42"):
        assert secret not in masked
    assert "a=1" in masked


def test_debug_output_of_login_hides_device_code_and_tokens(
    run: Piu, monkeypatch: pytest.MonkeyPatch
) -> None:
    from piu_fakes import FakeIdp

    monkeypatch.delenv("PIU_TOKEN")
    monkeypatch.setenv("PIU_ISSUER", "https://idp.example.com")
    run.idp = FakeIdp()
    result = run("-v", "login", "--no-browser")
    assert result.exit_code == 0, result.output
    assert "piu: debug: > POST https://idp.example.com/token" in result.stderr
    assert "device-code-secret-123" not in result.output
    assert "refresh-token-1" not in result.output
    assert run.idp.issued[-1] not in result.output


# help and start-up


def test_help_lists_the_commands_without_importing_httpx() -> None:
    code = (
        "import sys\n"
        "from piu.cli import main\n"
        "sys.argv = ['piu', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('httpx', 'cryptography', 'yaml') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for command in ("login", "ssh", "request-access", "list-access", "config", "completion"):
        assert command in out.stdout
    assert "HEAVY []" in out.stdout
