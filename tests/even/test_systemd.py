"""`even init --systemd`: the unit parses (systemd-analyze when present) and is hardened."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from even.errors import ConfigError
from even.systemd import render_unit


def _init(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "even.cli", "init", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _service(unit: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(unit.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
    return parser["Service"]


def test_init_systemd_writes_a_hardened_unit(tmp_path: Path) -> None:
    directory = tmp_path / "even"
    result = _init(
        str(directory), "--dev-issuer", "--systemd", "--base-url", "http://127.0.0.1:9090"
    )
    assert result.returncode == 0, result.stderr
    unit = directory / "even.service"
    service = _service(unit)
    assert service["User"] == service["Group"] == "even"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == str(directory.resolve())
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["CapabilityBoundingSet"] == ""
    argv = service["ExecStart"].split()
    assert Path(argv[0]).is_absolute() and Path(argv[0]).exists()
    assert argv[1:5] == ["-m", "even.cli", "serve", "--config"]
    assert argv[5] == f"{directory.resolve()}/even.yaml"
    assert "--port" in argv and argv[argv.index("--port") + 1] == "9090"
    # On an existing directory, --systemd writes only the unit (the keys stay as they are).
    key = (directory / "audit_key").read_bytes()
    unit.unlink()
    again = _init(str(directory), "--systemd", "--systemd-user", "even-svc")
    assert again.returncode == 0, again.stderr
    assert _service(unit)["User"] == "even-svc"
    assert (directory / "audit_key").read_bytes() == key


def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the structural test above still runs)")
    directory = tmp_path / "even"
    assert _init(str(directory), "--dev-issuer", "--systemd").returncode == 0
    result = subprocess.run(
        [analyze, "verify", str(directory / "even.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings ("…, ignoring"): none may be printed.
    assert "even.service" not in result.stderr, result.stderr


def test_unit_refuses_unsafe_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a valid user"):
        render_unit(tmp_path, user="root; rm")
    with pytest.raises(ConfigError, match="must not contain"):
        render_unit(tmp_path / "with space")
