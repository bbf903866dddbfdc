"""Issue 18 end to end: a live Even grants, a real sshd logs through syslog, and
`even-audit reconcile` joins the two.

Even (its HTTP API, piu, odd sync for the CA and KRL) and sshd are the real ones; sshd logs
through syslog(3) into an auth.log (harness/syslog.py). The logins: a certificate used in its
window (explained); a certificate used after `piu revoke` but before the host's `odd sync`
fetched the new KRL (outside_window); a static key placed in authorized_keys behind Even's
back, and a password login (both unexplained); a certificate never used (unused). The export
is taken through the API by an auditor, then reconciled.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paramiko
import pytest

from harness.even_server import EvenServer, even_command, start_even
from harness.ports import free_port
from harness.sshd import SshdHandle, ensure_login_user, known_hosts_line, ssh_argv, start_sshd
from tests.conftest import make_live_even_dir

pytestmark = [pytest.mark.integration, pytest.mark.sshd, pytest.mark.even_server]

HOST = "host-1.lab.even.test"
LOGIN = "piutest"
PASSWORD_USER = "recon-pw"
AUDIT = [sys.executable, "-m", "audit.cli"]


@dataclass
class Lab:
    root: Path
    config: Path
    even: EvenServer
    sshd: SshdHandle
    home: Path
    ca_file: Path
    krl_file: Path

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
        )

    def token(self, user: str, *groups: str) -> str:
        argv = [*even_command(), "dev-token", "--config", str(self.config), "--user", user]
        for group in groups:
            argv += ["--groups", group]
        return self.run(*argv).stdout.strip()

    def piu(self, *args: str) -> subprocess.CompletedProcess:
        env = {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "cfg"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "PIU_EVEN_URL": self.even.url,
            "PIU_TOKEN": self.token(LOGIN),
            "SSH_AUTH_SOCK": "",
        }
        return self.run(sys.executable, "-m", "piu", *args, env=env)

    def grant(self) -> dict:
        result = self.piu("request-access", HOST, "lab work INC-18", "-o", "json", "--no-agent")
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

    def ssh(self, identity: Path, certificate: Path | None) -> int:
        known_hosts = self.root / "known_hosts"
        known_hosts.write_text(known_hosts_line(self.sshd, HOST))
        argv = ssh_argv(
            self.sshd,
            login=LOGIN,
            hostname=HOST,
            identity=identity,
            certificate=certificate,
            known_hosts=known_hosts,
            command="true",
        )
        return self.run(*argv, env={"HOME": str(self.home)}).returncode

    def ssh_cert(self, answer: dict) -> int:
        return self.ssh(Path(answer["identity_file"]), Path(answer["certificate_file"]))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, real_sshd_available) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("reconcile")
    # sshd reads authorized_keys as the login user: its directory must be reachable by that
    # user, and pytest's temporary root is not (0700).
    sshd_dir = Path(tempfile.mkdtemp(prefix="reconcile-sshd-"))
    sshd_dir.chmod(0o755)
    port = free_port()
    config = make_live_even_dir(root / "even", port)
    ensure_login_user(LOGIN)
    ensure_login_user(PASSWORD_USER)
    even = start_even(config, log_path=root / "even.log", port=port)
    sshd = None
    try:
        etc = root / "etc"
        etc.mkdir()
        ca_file, krl_file = etc / "even_user_ca.pub", etc / "even_revoked.krl"
        probe = Lab(root, config, even, None, root / "home", ca_file, krl_file)  # type: ignore[arg-type]
        probe.odd_sync()
        sshd = start_sshd(
            sshd_dir,
            hostname=HOST,
            ca_file=ca_file,
            krl_file=krl_file,
            syslog=True,
            extra_config=[f"Match User {PASSWORD_USER}", "    PasswordAuthentication yes"],
        )
        (root / "home").mkdir()
        yield Lab(root, config, even, sshd, root / "home", ca_file, krl_file)
    finally:
        if sshd is not None:
            sshd.stop()
        even.stop()
        shutil.rmtree(sshd_dir, ignore_errors=True)


def _password_login(port: int, password: str) -> None:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(
            "127.0.0.1",
            port=port,
            username=PASSWORD_USER,
            password=password,
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )
    finally:
        client.close()


def _set_password(password: str | None) -> None:
    if password is None:  # back to "no password" (not a locked account: see ensure_login_user)
        subprocess.run(["usermod", "-p", "*", PASSWORD_USER], check=True, timeout=30)
        return
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    subprocess.run(["usermod", "-p", hashed, PASSWORD_USER], check=True, timeout=30)


def test_reconcile_a_live_even_against_its_hosts_sshd_log(lab: Lab) -> None:
    used, doomed, never = lab.grant(), lab.grant(), lab.grant()
    assert lab.ssh_cert(used) == 0
    assert lab.piu("revoke", doomed["id"], "--reason", "laptop lost").returncode == 0
    assert lab.ssh_cert(doomed) == 0  # the host has not synced its KRL yet
    lab.odd_sync()
    assert lab.ssh_cert(doomed) == 255  # refused from now on: no further login line

    static = lab.root / "id_static"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(static)], check=True
    )
    keys = lab.sshd.authorized_keys_dir / LOGIN
    keys.write_text(static.with_suffix(".pub").read_text())
    try:
        assert lab.ssh(static, None) == 0
    finally:
        keys.unlink()
    password = secrets.token_urlsafe(18)
    _set_password(password)
    try:
        _password_login(lab.sshd.port, password)
    finally:
        _set_password(None)
    lab.sshd.wait_for_log(rf"Accepted password for {PASSWORD_USER}")

    token = lab.root / "auditor.token"
    token.write_text(lab.token("audrey", "audit"))
    export, key = lab.root / "export.jsonl", lab.root / "audit.pem"
    exported = lab.run(
        *AUDIT, "export", "--url", lab.even.url, "--token-file", str(token), "-o", str(export)
    )
    assert exported.returncode == 0, exported.stderr
    key.write_bytes(httpx.get(lab.even.url + "/v1/audit/public-key", trust_env=False).content)
    log = lab.sshd.log_path
    args = [str(export), "--public-key", str(key), "--sshd-log", str(log)]
    result = lab.run(*AUDIT, "reconcile", *args, "-o", "json")
    assert result.returncode == 1, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    logins = [o for o in objects if o["kind"] == "login"]
    found = [(o["user"], o["key_id"], o["class"]) for o in logins]
    assert found == [
        (LOGIN, used["key_id"], "explained"),
        (LOGIN, doomed["key_id"], "outside_window"),
        (LOGIN, None, "unexplained"),
        (PASSWORD_USER, None, "unexplained"),
    ], result.stdout
    assert logins[0]["serial"] == used["serial"] and logins[0]["host"] == HOST
    assert logins[1]["reason"] == "after the grant was revoked"
    assert [o["request_id"] for o in objects if o["kind"] == "grant"] == [never["id"]]

    table = lab.run(*AUDIT, "reconcile", *args)
    assert table.returncode == 1
    assert f"{used['key_id']}#{used['serial']}" in table.stdout
    assert "4 logins in" in table.stdout and "1 explained, 2 unexplained" in table.stdout

    # Only the explained login: exit 0.
    lines = log.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if "Accepted publickey" in line)
    only = lab.root / "only-explained.log"
    only.write_text("\n".join(lines[: first + 1]) + "\n")
    clean = lab.run(
        *AUDIT, "reconcile", str(export), "--public-key", str(key), "--sshd-log", str(only)
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
