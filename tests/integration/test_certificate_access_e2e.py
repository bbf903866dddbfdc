"""Issue 2, must-show 1 and 2: piu gets a certificate from a running Even, and a real sshd
configured by `odd sshd-config` (CA from GET /v1/ca, principals from `odd principals`)
accepts it; the sshd log's key id and serial join to the `access.granted` record. The same
sshd refuses a certificate for another host, an expired one and a login never granted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from audit import store as audit_store
from even.api.app import create_app
from even.clock import FixedClock, SystemClock
from even.config import load_settings
from even.store.db import make_engine
from even.wiring import build_components
from harness.even_server import EvenServer, even_command, start_even
from harness.ports import free_port
from harness.sshd import (
    SshdHandle,
    ensure_login_user,
    known_hosts_line,
    ssh_argv,
    start_sshd,
)
from tests.conftest import make_live_even_dir

pytestmark = [pytest.mark.sshd, pytest.mark.even_server]

HOST = "host-1.lab.even.test"
OTHER_HOST = "host-2.lab.even.test"
LOGIN = "piutest"
OTHER_LOGIN = "piutest2"
REFUSED = 255


@dataclass
class Lab:
    config: Path
    even: EvenServer
    sshd: SshdHandle
    home: Path
    known_hosts: Path

    def token(self, user: str = LOGIN) -> str:
        return subprocess.run(
            [*even_command(), "dev-token", "--config", str(self.config), "--user", user],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def piu(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "cfg"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "PIU_EVEN_URL": self.even.url,
            "PIU_TOKEN": self.token(),
            "SSH_AUTH_SOCK": "",
        }
        return subprocess.run(
            [sys.executable, "-m", "piu", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    def ssh(self, login: str, certificate: Path) -> subprocess.CompletedProcess[str]:
        argv = ssh_argv(
            self.sshd,
            login=login,
            hostname=HOST,
            identity=self.home / ".ssh" / "piu" / "id_ed25519",
            certificate=certificate,
            known_hosts=self.known_hosts,
            command="id -un",
        )
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "HOME": str(self.home)},
        )

    def records(self) -> list[dict]:
        engine = make_engine(load_settings(self.config).resolved_database_url)
        with engine.connect() as conn:
            return list(audit_store.iter_records(conn))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, real_sshd_available) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    port = free_port()
    config = make_live_even_dir(root / "even", port)
    for login in (LOGIN, OTHER_LOGIN):
        ensure_login_user(login)
    even = start_even(config, log_path=root / "even.log", port=port)
    sshd = None
    try:
        ca_file = root / "ca.pub"
        ca_file.write_text(httpx.get(even.url + "/v1/ca", trust_env=False).text)
        sshd = start_sshd(root / "sshd", hostname=HOST, ca_file=ca_file)
        known_hosts = root / "known_hosts"
        known_hosts.write_text(known_hosts_line(sshd, HOST))
        home = root / "home"
        home.mkdir()
        yield Lab(config, even, sshd, home, known_hosts)
    finally:
        if sshd is not None:
            sshd.stop()
        even.stop()


def _certificate(lab: Lab, host: str, request_id: str) -> Path:
    return lab.home / ".ssh" / "piu" / f"{host}-{request_id}-cert.pub"


def _grant(lab: Lab, host: str) -> dict:
    result = lab.piu("request-access", host, "lab work INC-7", "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sshd_accepts_piu_certificate_and_log_joins_audit_record(lab: Lab) -> None:
    answer = _grant(lab, HOST)
    certificate = Path(answer["certificate_file"])
    assert certificate == _certificate(lab, HOST, answer["id"])
    assert certificate.stat().st_mode & 0o777 == 0o600
    result = lab.ssh(LOGIN, certificate)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == LOGIN
    line = lab.sshd.wait_for_log(rf"Accepted publickey for {LOGIN} .* ID (\S+) \(serial (\d+)\)")
    key_id, serial = line.group(1), int(line.group(2))
    granted = [
        r
        for r in lab.records()
        if r["type"] == "access.granted" and r["request_id"] == answer["id"]
    ]
    assert len(granted) == 1
    assert (granted[0]["details"]["key_id"], granted[0]["details"]["serial"]) == (key_id, serial)
    assert key_id == f"even:{answer['id']}:{LOGIN}" and serial == answer["serial"]


def test_certificate_for_another_host_is_refused(lab: Lab) -> None:
    answer = _grant(lab, OTHER_HOST)
    result = lab.ssh(LOGIN, Path(answer["certificate_file"]))
    assert result.returncode == REFUSED
    lab.sshd.wait_for_log(rf"Failed publickey for {LOGIN} .* ID even:{answer['id']}:{LOGIN} ")
    assert "Certificate does not contain an authorized principal" in lab.sshd.log_text()
    assert "Accepted publickey for" not in _log_about(lab, answer["id"])


def test_login_that_was_not_granted_is_refused(lab: Lab) -> None:
    answer = _grant(lab, HOST)  # principal piutest@host-1 only
    result = lab.ssh(OTHER_LOGIN, Path(answer["certificate_file"]))
    assert result.returncode == REFUSED
    lab.sshd.wait_for_log(rf"Failed publickey for {OTHER_LOGIN} .* ID even:{answer['id']}:")
    assert f"Accepted publickey for {OTHER_LOGIN}" not in lab.sshd.log_text()


def test_expired_certificate_is_refused(lab: Lab) -> None:
    # The same CA and database, with Even's clock injected two hours back: the certificate
    # it signs expired long ago by the sshd's (real) clock. No sleeping, no clock setting.
    past = SystemClock().now() - timedelta(hours=2)
    settings = load_settings(lab.config)
    components = build_components(settings, FixedClock(past))
    assert components.dev_issuer is not None
    token = components.dev_issuer.mint(LOGIN, [], issued_at=int(past.timestamp()))
    public_key = (lab.home / ".ssh" / "piu" / "id_ed25519.pub").read_text().strip()
    with TestClient(create_app(settings, components=components)) as client:
        r = client.post(
            "/v1/access-requests",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "hostname": HOST,
                "reason": "lab work INC-8",
                "public_key": public_key,
                "lifetime_minutes": 30,
            },
        )
    assert r.status_code == 201, r.text
    certificate = lab.home / "expired-cert.pub"
    certificate.write_text(r.json()["certificate"] + "\n")
    result = lab.ssh(LOGIN, certificate)
    assert result.returncode == REFUSED
    lab.sshd.wait_for_log(r"[Cc]ertificate invalid: expired")


def _log_about(lab: Lab, request_id: str) -> str:
    return "\n".join(line for line in lab.sshd.log_text().splitlines() if request_id in line)
