"""Issue 5, must-show 1 and 4, end to end: Even serves /v1/ca and /v1/krl, `odd sync --once`
writes the files a real sshd reads. `piu revoke` + `odd sync` → sshd refuses that certificate
("revoked by file") while others keep working. After `even ca rotate` + `activate`, a
certificate from the old key still logs in and new certificates carry the new key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.even_server import EvenServer, even_command, start_even
from harness.ports import free_port
from harness.sshd import SshdHandle, ensure_login_user, known_hosts_line, ssh_argv, start_sshd
from tests.conftest import make_live_even_dir

pytestmark = [pytest.mark.sshd]

HOST = "host-1.lab.even.test"
LOGIN = "piutest"


@dataclass
class Lab:
    root: Path
    config: Path
    even: EvenServer
    sshd: SshdHandle
    home: Path
    ca_file: Path
    krl_file: Path

    def run(
        self, *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
        )

    def piu(self, *args: str) -> subprocess.CompletedProcess[str]:
        token = self.run(
            *even_command(), "dev-token", "--config", str(self.config), "--user", LOGIN
        ).stdout.strip()
        env = {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "cfg"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "PIU_EVEN_URL": self.even.url,
            "PIU_TOKEN": token,
            "SSH_AUTH_SOCK": "",
        }
        return self.run(sys.executable, "-m", "piu", *args, env=env)

    def grant(self) -> dict:
        result = self.piu("request-access", HOST, "lab work INC-9", "-o", "json", "--no-agent")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def odd_sync(self) -> None:
        result = self.run(
            sys.executable,
            "-m",
            "odd",
            "sync",
            "--even-url",
            self.even.url,
            "--ca-file",
            str(self.ca_file),
            "--krl-file",
            str(self.krl_file),
            "--once",
        )
        assert result.returncode == 0, result.stderr

    def ssh(self, answer: dict) -> subprocess.CompletedProcess[str]:
        known_hosts = self.root / "known_hosts"
        known_hosts.write_text(known_hosts_line(self.sshd, HOST))
        argv = ssh_argv(
            self.sshd,
            login=LOGIN,
            hostname=HOST,
            identity=Path(answer["identity_file"]),
            certificate=Path(answer["certificate_file"]),
            known_hosts=known_hosts,
            command="true",
        )
        return self.run(*argv, env={"HOME": str(self.home)})

    def even_cli(self, *args: str) -> str:
        result = self.run(*even_command(), *args, "--config", str(self.config))
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory, real_sshd_available) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("revocation")
    port = free_port()
    config = make_live_even_dir(root / "even", port)
    ensure_login_user(LOGIN)
    even = start_even(config, log_path=root / "even.log", port=port)
    sshd = None
    try:
        etc = root / "etc"
        etc.mkdir()
        ca_file, krl_file = etc / "even_user_ca.pub", etc / "even_revoked.krl"
        probe = Lab(root, config, even, None, root / "home", ca_file, krl_file)  # type: ignore[arg-type]
        probe.odd_sync()
        sshd = start_sshd(root / "sshd", hostname=HOST, ca_file=ca_file, krl_file=krl_file)
        (root / "home").mkdir()
        yield Lab(root, config, even, sshd, root / "home", ca_file, krl_file)
    finally:
        if sshd is not None:
            sshd.stop()
        even.stop()


def test_piu_revoke_and_odd_sync_make_sshd_refuse_only_that_certificate(lab: Lab) -> None:
    doomed, kept = lab.grant(), lab.grant()
    assert lab.ssh(doomed).returncode == 0 and lab.ssh(kept).returncode == 0
    revoke = lab.piu("revoke", doomed["id"], "--reason", "laptop lost")
    assert revoke.returncode == 0, revoke.stderr
    assert lab.ssh(doomed).returncode == 0  # hosts learn of it at their next sync
    lab.odd_sync()
    assert lab.ssh(doomed).returncode == 255
    lab.sshd.wait_for_log(r"revoked by file")
    lab.sshd.wait_for_log(
        rf"Failed publickey for {LOGIN} .* ID {doomed['key_id']} "
        rf"\(serial {doomed['serial']}\)"
    )
    assert lab.ssh(kept).returncode == 0


def test_ca_rotation_keeps_old_certificates_working(lab: Lab) -> None:
    old = lab.grant()
    lab.even_cli("ca", "rotate")
    lab.odd_sync()
    assert len(lab.ca_file.read_text().splitlines()) == 2
    lab.even_cli("ca", "activate")
    new = lab.grant()
    listing = lab.even_cli("ca", "list")
    active = next(line.split()[1] for line in listing.splitlines() if line.startswith("active"))
    assert _signing_ca(new) == active != _signing_ca(old)
    assert lab.ssh(old).returncode == 0, "a certificate from the retired key still logs in"
    assert lab.ssh(new).returncode == 0


def _signing_ca(answer: dict) -> str:
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", answer["certificate_file"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return shown.split("Signing CA: ")[1].split()[1]
