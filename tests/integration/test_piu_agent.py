"""A grant's certificates in a real ssh-agent, for exactly the certificates' lifetime.

A real `ssh-agent -D -a SOCK` (ended by PID). piu runs in-process against a stand-in Even
(httpx MockTransport) that signs with `ssh-keygen -s` and a throwaway CA, valid for a few
seconds; `ssh-add -l` (the real client) must list the certificates, not the plain key, and
must stop listing them once the agent's lifetime ran out: the agent enforces that itself, so
the test waits (≤ 10 s, see DESIGN.md) instead of moving a clock.

Skipped with a reason when OpenSSH's agent tools are missing; failed instead when CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from piu.cli import Runtime, cli
from tests.conftest import requires_real_component

pytestmark = [pytest.mark.integration, pytest.mark.ssh_agent]

HOST = "db-1.prod.even.test"
BASTION = "odd-eu"
REQUEST_ID = "01J9ZK6Q0B8W2C3D4E5F6G7H8K"
LIFETIME = 4  # seconds the stand-in's certificates are valid for


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        requires_real_component(f"{name} not installed (OpenSSH client)")
    return str(path)


@pytest.fixture
def agent_socket(tmp_path: Path) -> Iterator[str]:
    socket_path = tmp_path / "agent.sock"
    proc = subprocess.Popen(
        [_tool("ssh-agent"), "-D", "-a", str(socket_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ssh-agent did not start")
            time.sleep(0.02)
        yield str(socket_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SigningEven:
    """Grants with certificates from `ssh-keygen -s`, valid for LIFETIME seconds."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ca = workdir / "ca"
        subprocess.run(
            [_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(self.ca)],
            check=True,
            timeout=30,
        )
        self.serial = 0

    def sign(self, public_key: str, principal: str) -> str:
        self.serial += 1
        public = self.workdir / f"req-{self.serial}.pub"
        public.write_text(public_key + "\n")
        subprocess.run(
            [_tool("ssh-keygen"), "-q", "-s", str(self.ca), "-I", f"even:{REQUEST_ID}",
             "-n", principal, "-z", str(self.serial), "-V", f"-1m:+{LIFETIME}s", str(public)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return public.with_name(f"req-{self.serial}-cert.pub").read_text().strip()

    def handle(self, request: httpx.Request) -> httpx.Response:
        body: dict[str, Any] = json.loads(request.content)
        bastion = body.get("bastion")
        return httpx.Response(
            201,
            json={
                "id": REQUEST_ID,
                "status": "GRANTED",
                "username": "alice",
                "login": "alice",
                "hostname": body["hostname"],
                "mode": "certificate",
                "certificate": self.sign(body["public_key"], f"alice@{body['hostname']}"),
                "serial": 1,
                "valid_before": None,
                "bastion": bastion,
                "bastion_certificate": (
                    self.sign(body["public_key"], f"alice@{bastion}") if bastion else None
                ),
                "bastion_serial": 2 if bastion else None,
                "receipt": None,
            },
        )


def agent_list(socket_path: str) -> list[str]:
    out = subprocess.run(
        [_tool("ssh-add"), "-l"],
        env={**os.environ, "SSH_AUTH_SOCK": socket_path},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return [line for line in out.stdout.splitlines() if "SHA256:" in line]


def test_certificates_live_in_the_agent_for_the_grants_lifetime(
    tmp_path: Path, agent_socket: str
) -> None:
    even = SigningEven(tmp_path)
    home = tmp_path / "home"
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        "PIU_EVEN_URL": "https://even.example.com",
        "PIU_TOKEN": "test-token",
        "SSH_AUTH_SOCK": agent_socket,
    }
    runtime = Runtime(env=env, transport=httpx.MockTransport(even.handle))
    result = CliRunner().invoke(cli, [HOST, "INC-1 debug", "-O", BASTION], obj=runtime)
    assert result.exit_code == 0, result.output
    assert "added to ssh-agent for" in result.stderr

    listed = agent_list(agent_socket)
    assert len(listed) == 2, listed
    assert all(line.endswith("(ED25519-CERT)") for line in listed)  # no plain key
    assert {line.split()[2] for line in listed} == {
        f"piu:{REQUEST_ID}:{HOST}",
        f"piu:{REQUEST_ID}:{BASTION}",
    }

    deadline = time.monotonic() + 10
    while agent_list(agent_socket) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert agent_list(agent_socket) == []


def test_no_agent_leaves_the_agent_alone(tmp_path: Path, agent_socket: str) -> None:
    even = SigningEven(tmp_path)
    env = {
        "HOME": str(tmp_path / "home"),
        "PIU_EVEN_URL": "https://even.example.com",
        "PIU_TOKEN": "test-token",
        "SSH_AUTH_SOCK": agent_socket,
    }
    runtime = Runtime(env=env, transport=httpx.MockTransport(even.handle))
    result = CliRunner().invoke(cli, [HOST, "INC-1 debug", "--no-agent"], obj=runtime)
    assert result.exit_code == 0, result.output
    assert agent_list(agent_socket) == []
