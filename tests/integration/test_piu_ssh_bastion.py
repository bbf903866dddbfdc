"""Issue 9, must-show 3 and 4: `piu ssh HOST -- hostname` through a bastion to a real sshd,
reusing a still-valid certificate (one grant in the audit log), and `--tunnel L:R` forwarding
a port through the bastion to a service on the target.

Two real sshd on loopback ports stand in for the bastion and the target; an ssh_config
(piu's `ssh_config` setting, given to both hops) maps their names to those ports.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from audit import store as audit_store
from even.config import load_settings
from even.store.db import make_engine
from harness.even_server import EvenServer, even_command, start_even
from harness.ports import free_port
from harness.sshd import SshdHandle, ensure_login_user, known_hosts_line, start_sshd
from tests.conftest import make_live_even_dir

pytestmark = [pytest.mark.sshd]

USER = "piutest"
BASTION = "bastion-1.lab.even.test"
TARGET = "db-1.behind.even.test"
POLICY = f"""
defaults:
  max_lifetime_minutes: 30
  reason: {{min_length: 5}}
rules:
  - name: behind-bastion
    subjects: {{users: [{USER}]}}
    hosts: ["*.behind.even.test"]
    logins: ["{{username}}"]
    bastion: {BASTION}
    extensions: [permit-pty, permit-port-forwarding]
"""


@dataclass
class Lab:
    root: Path
    config: Path
    even: EvenServer
    bastion: SshdHandle
    target: SshdHandle
    ssh_config: Path

    def env(self) -> dict[str, str]:
        token = subprocess.run(
            [*even_command(), "dev-token", "--config", str(self.config), "--user", USER],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        home = self.root / "home"
        return {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "cfg"),
            "XDG_STATE_HOME": str(home / "state"),
            "PIU_EVEN_URL": self.even.url,
            "PIU_TOKEN": token,
            "PIU_SSH_CONFIG": str(self.ssh_config),
            "SSH_AUTH_SOCK": "",
        }

    def grants(self) -> int:
        engine = make_engine(load_settings(self.config).resolved_database_url)
        with engine.connect() as conn:
            return sum(r["type"] == "access.granted" for r in audit_store.iter_records(conn))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, real_sshd_available) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("piu-ssh")
    (root / "home").mkdir()
    port = free_port()
    config = make_live_even_dir(root / "even", port)
    (root / "even" / "policy.yaml").write_text(POLICY)
    ensure_login_user(USER)
    ca_file = root / "ca.pub"
    bastion = target = None
    even = None
    try:
        bastion = start_sshd(root / "bastion", hostname=BASTION, ca_file=ca_file)
        data = yaml.safe_load(config.read_text())
        data["bastions"] = [
            {
                "name": BASTION,
                "address": f"127.0.0.1:{bastion.port}",
                "hosts": ["*.behind.even.test"],
            }
        ]
        config.write_text(yaml.safe_dump(data))
        even = start_even(config, log_path=root / "even.log", port=port)
        ca_file.write_text(httpx.get(even.url + "/v1/ca", trust_env=False).text)
        target = start_sshd(root / "target", hostname=TARGET, ca_file=ca_file)
        known = root / "known_hosts"
        known.write_text(known_hosts_line(bastion, BASTION) + known_hosts_line(target, TARGET))
        ssh_config = root / "ssh_config"
        ssh_config.write_text(
            "\n".join(
                [
                    f"Host {BASTION}",
                    "    HostName 127.0.0.1",
                    f"    Port {bastion.port}",
                    f"Host {TARGET}",
                    "    HostName 127.0.0.1",
                    f"    Port {target.port}",
                    "Host *",
                    f"    UserKnownHostsFile {known}",
                    "    GlobalKnownHostsFile /dev/null",
                    "    StrictHostKeyChecking yes",
                    "    BatchMode yes",
                    "    IdentityAgent none",
                    "    ConnectTimeout 5",
                    "    ExitOnForwardFailure yes",
                    "",
                ]
            )
        )
        yield Lab(root, config, even, bastion, target, ssh_config)
    finally:
        for daemon in (target, bastion):
            if daemon is not None:
                daemon.stop()
        if even is not None:
            even.stop()


def test_piu_ssh_through_the_bastion_reuses_a_valid_certificate(lab: Lab) -> None:
    first = subprocess.run(
        [
            sys.executable,
            "-m",
            "piu",
            "ssh",
            TARGET,
            "--reason",
            "debug INC-9 via bastion",
            "--",
            "hostname",
        ],
        capture_output=True,
        text=True,
        env=lab.env(),
        timeout=60,
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == socket.gethostname()  # the target's hostname
    lab.target.wait_for_log(rf"Accepted publickey for {USER} .* ID even:\S+:{USER} ")
    lab.bastion.wait_for_log(rf"Accepted publickey for {USER} .* ID even:\S+:{USER}:bastion ")
    again = subprocess.run(
        [sys.executable, "-m", "piu", "ssh", TARGET, "--", "hostname"],
        capture_output=True,
        text=True,
        env=lab.env(),
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert "using grant" in again.stderr
    assert lab.grants() == 1


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"service:" + conn.recv(64))

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_tunnel_forwards_a_port_through_the_bastion(lab: Lab) -> None:
    service, remote = _echo_server()
    local = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "piu",
            "request-access",
            TARGET,
            "tunnel INC-10 for psql",
            "--tunnel",
            f"{local}:{remote}",
            "--connect",
        ],
        env=lab.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        answer = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not answer:
            try:
                with socket.create_connection(("127.0.0.1", local), timeout=2) as conn:
                    conn.sendall(b"ping")
                    answer = conn.recv(64)
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.2)
        assert answer == b"service:ping"
    finally:
        process.terminate()
        process.wait(timeout=10)
        service.close()
