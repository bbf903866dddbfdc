"""The `odd` command line: output, exit codes (0 ok, 1 host failure, 2 usage), error format."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from odd import cli as odd_cli
from odd.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_principals(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "principals", "--hostname", "host-1.even.test", "piutest") == (
        0,
        "piutest@host-1.even.test\n",
        "",
    )


@pytest.mark.parametrize(
    ("hostname", "user"),
    [
        ("host-1.even.test", "Root"),
        ("host-1.even.test", "a\nb"),
        ("host-1.even.test", ""),
        ("localhost", "piutest"),
        ("web1", "piutest"),
        ("127.0.0.1", "piutest"),
        ("Host-1.even.test", "piutest"),
    ],
)
def test_principals_refuses_without_output(
    capsys: pytest.CaptureFixture[str], hostname: str, user: str
) -> None:
    code, out, err = _run(capsys, "principals", "--hostname", hostname, user)
    assert (code, out) == (2, "")
    assert err.startswith("odd: error: ")
    assert err.count("\n") == 1  # control characters are escaped, not echoed


def test_principals_hostname_from_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "odd.conf"
    config.write_text("[odd]\nhostname = host-1.even.test\n", encoding="utf-8")
    assert _run(capsys, "principals", "--config", str(config), "piutest")[:2] == (
        0,
        "piutest@host-1.even.test\n",
    )
    monkeypatch.setenv("ODD_CONFIG", str(config))
    assert _run(capsys, "principals", "piutest")[:2] == (0, "piutest@host-1.even.test\n")
    # --hostname wins over the file.
    assert _run(capsys, "principals", "--hostname", "h.example.org", "piutest")[1] == (
        "piutest@h.example.org\n"
    )


def test_principals_without_any_hostname(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "odd.conf"
    config.write_text("[odd]\n", encoding="utf-8")
    monkeypatch.setenv("ODD_CONFIG", str(config))
    code, out, err = _run(capsys, "principals", "piutest")
    assert (code, out) == (2, "")
    assert "pass --hostname" in err


def test_bad_config_is_a_host_failure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "odd.conf"
    config.write_text("[odd]\nhostname = localhost\n", encoding="utf-8")
    code, out, err = _run(capsys, "principals", "--config", str(config), "piutest")
    assert (code, out) == (1, "")
    assert err.startswith(f"odd: error: {config}: ")
    assert _run(capsys, "principals", "--config", str(tmp_path / "nope"), "piutest")[0] == 1


def test_sshd_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(
        capsys,
        "sshd-config",
        "--hostname",
        "host-1.even.test",
        "--ca-file",
        str(tmp_path / "ca.pub"),
        "--krl-file",
        str(tmp_path / "krl"),
        "--principals-command",
        "/run/odd/libexec/odd-principals",
    )
    assert code == 0
    assert f"TrustedUserCAKeys {tmp_path}/ca.pub\n" in out
    assert f"RevokedKeys {tmp_path}/krl\n" in out
    assert (
        "AuthorizedPrincipalsCommand /run/odd/libexec/odd-principals "
        "--hostname host-1.even.test %u\n" in out
    )
    assert "Match" not in out


def test_sshd_config_push(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "sshd-config", "--hostname", "host-1.even.test", "--push")
    assert code == 0
    assert "Match User granting-service\n" in out
    out = _run(
        capsys, "sshd-config", "--hostname", "h.example.org", "--push", "--push-user", "root"
    )[1]
    assert "PermitRootLogin forced-commands-only" in out


def test_sshd_config_refuses_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "sshd-config", "--hostname", "h.example.org", "--ca-file", "x y")[:2] == (
        2,
        "",
    )
    assert _run(capsys, "sshd-config", "--hostname", "localhost")[:2] == (2, "")


def test_install_refusal_is_reported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _run(
        capsys, "install", "--prefix", str(tmp_path), "--python", "/usr/bin/python3"
    )
    assert (code, out) == (1, "")
    assert err.startswith("odd: error: ")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["principals"], ["nonsense"], ["principals", "--bogus", "x"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    assert "odd: error:" in capsys.readouterr().err


def test_python_dash_m_exit_codes() -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "odd", *argv], capture_output=True, text=True, check=False
        )

    ok = run("principals", "--hostname", "host-1.even.test", "piutest")
    assert (ok.returncode, ok.stdout) == (0, "piutest@host-1.even.test\n")
    bad = run("principals", "--hostname", "host-1.even.test", "Bad")
    assert (bad.returncode, bad.stdout, bad.stderr.startswith("odd: error: ")) == (2, "", True)
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("command", ["grant-ssh-access", "principals"])
def test_the_commands_sshd_runs_parse_and_explain_themselves_as_with_every_parser(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    from odd.cli import build_parser

    argv = {"grant-ssh-access": [command, "--config", "/etc/odd.conf"],
            "principals": [command, "--hostname", "h.even.test", "u", "KEY"]}[command]  # fmt: skip
    only, every = build_parser(command), build_parser()
    assert vars(only.parse_args(argv)) == vars(every.parse_args(argv))
    for parser in (only, every):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
    only_help, every_help = capsys.readouterr().out.split("usage: ")[1:]
    assert only_help == every_help
    errors = []
    for parser in (only, every):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([*argv, "--no-such-option"])
        assert exited.value.code == 2
        errors.append(capsys.readouterr().err)
    assert errors[0] == errors[1] and "unrecognized arguments: --no-such-option" in errors[0]


@pytest.mark.parametrize("columns", ["100", "0", "-3", "abc", None])
def test_help_width_is_found_as_shutil_finds_it(
    monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert odd_cli._terminal_columns() == shutil.get_terminal_size().columns
