"""Issue 14, finding 1: a bastion certificate opens exactly one thing, a channel to its own
target's port 22, on a real sshd configured by `odd sshd-config --bastion-for`.

A bastion and a target in their own network namespaces (harness/netns.py), each with its own
sshd; Even (`even serve`) and the user's `ssh` in the root namespace, which reaches the bastion
but not the target. With both certificates `ssh -J` reaches the target; through the same
bastion every other `-W` destination (another port of the target, the target by address,
another host, the bastion's own loopback), `-R` and a shell are refused. piu (`piu ssh`, a
ProxyCommand hop) keeps working through it, reusing a valid grant, and `--tunnel` forwards a
port of the target.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
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
from harness import sshd as sshd_harness
from harness.even_server import EvenServer, even_command, start_even
from harness.netns import NamespacedSshd, NetnsUnavailable, Topology, create_topology
from harness.ports import free_port
from harness.sshd import SshdUnavailable, ensure_login_user
from odd.bastion import certificate_principals
from tests.conftest import make_live_even_dir, requires_real_component

pytestmark = pytest.mark.integration

USER = "piutest"  # the requester (Even username) and the login on both hosts
BASTION = "bastion.even.test"
TARGET = "target.even.test"
OTHER = "other.even.test"  # another host behind the bastion, grantable, not this grant's
LOOPBACK_SERVICE_PORT = 8080  # a service on the bastion's own loopback
TARGET_SERVICE_PORT = 5432  # a service on the target's loopback, for --tunnel
POLICY = f"""
defaults: {{max_lifetime_minutes: 30, reason: {{min_length: 5}}}}
rules:
  - name: behind-bastion
    subjects: {{users: [{USER}]}}
    hosts: ["*.even.test"]
    logins: ["{{username}}"]
    bastion: {BASTION}
    extensions: [permit-pty, permit-port-forwarding]
"""
ECHO = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "while True:\n"
    "    c,_=s.accept(); c.sendall(sys.argv[2].encode()+c.recv(64)); c.close()\n"
)


@dataclass
class Lab:
    topo: Topology
    tmp: Path
    config: Path
    even: EvenServer
    bastion: NamespacedSshd
    target: NamespacedSshd
    token: str
    ssh_config: Path  # names and host keys only, for piu
    key: Path
    certs: dict[str, Path]

    def env(self) -> dict[str, str]:
        home = self.tmp / "home"
        return {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "cfg"),
            "XDG_STATE_HOME": str(home / "state"),
            "PIU_EVEN_URL": self.even.url,
            "PIU_TOKEN": self.token,
            "PIU_SSH_CONFIG": str(self.ssh_config),
            "SSH_AUTH_SOCK": "",
        }

    def ssh(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """The user's ssh with the grant's key and certificates (`user.cfg`)."""
        return subprocess.run(
            ["ssh", "-F", str(self.tmp / "user.cfg"), *args],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip

    def grants(self) -> int:
        engine = make_engine(load_settings(self.config).resolved_database_url)
        with engine.connect() as conn:
            return sum(r["type"] == "access.granted" for r in audit_store.iter_records(conn))


def _names_config(path: Path, topo: Topology, known_hosts: Path, extra: str = "") -> Path:
    path.write_text(
        f"Host {BASTION}\n"
        f"    HostName {topo.bastion.address}\n"
        f"    HostKeyAlias {BASTION}\n"
        f"{extra}"
        "Host *\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking yes\n"
        "    UpdateHostKeys no\n"
        "    BatchMode yes\n"
        "    IdentityAgent none\n"
        "    ConnectTimeout 5\n"
        "    ExitOnForwardFailure yes\n"
        "    LogLevel ERROR\n"
    )
    return path


def _even_token(config: Path) -> str:
    return subprocess.run(
        [*even_command(), "dev-token", "--config", str(config), "--user", USER],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if shutil.which("ssh") is None or not sshd_harness.SSHD.exists():
        requires_real_component("OpenSSH server/client not installed (run `make system-deps`)")
    tmp = tmp_path_factory.mktemp("bastion")
    (tmp / "home").mkdir()
    try:
        ensure_login_user(USER)
        topo = create_topology(bastion_hostname=BASTION, target_hostname=TARGET)
    except (SshdUnavailable, NetnsUnavailable) as exc:
        requires_real_component(f"bastion namespace test: {exc}")
    hosts_dir: Path | None = None
    even: EvenServer | None = None
    try:
        port = free_port()
        config = make_live_even_dir(tmp / "even", port)
        (config.parent / "policy.yaml").write_text(POLICY)
        data = yaml.safe_load(config.read_text())
        data["bastions"] = [
            {"name": BASTION, "address": f"{topo.bastion.address}:22", "hosts": ["*.even.test"]}
        ]
        config.write_text(yaml.safe_dump(data))
        even = start_even(config, log_path=tmp / "even.log", port=port)
        ca_file = tmp / "ca.pub"
        ca_file.write_text(httpx.get(even.url + "/v1/ca", trust_env=False).text)
        hosts_dir = sshd_harness._secure_tempdir()  # sshd's files: root-owned, 0755 up
        bastion = topo.start_sshd(
            topo.bastion, hosts_dir / BASTION, ca_file=ca_file, bastion_for=["*.even.test"]
        )
        target = topo.start_sshd(topo.target, hosts_dir / TARGET, ca_file=ca_file)
        known = tmp / "known_hosts"
        known.write_text(f"{BASTION} {bastion.host_key_pub}\n{TARGET} {target.host_key_pub}\n")
        token = _even_token(config)
        key = tmp / "id"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True
        )
        granted = httpx.post(
            even.url + "/v1/access-requests",
            json={
                "hostname": TARGET,
                "reason": "bastion confinement INC-14",
                "public_key": key.with_suffix(".pub").read_text().strip(),
            },
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        )
        assert granted.status_code == 201, granted.text
        certs = {TARGET: tmp / "target-cert.pub", BASTION: tmp / "bastion-cert.pub"}
        certs[TARGET].write_text(granted.json()["certificate"] + "\n")
        certs[BASTION].write_text(granted.json()["bastion_certificate"] + "\n")
        _names_config(
            tmp / "user.cfg",
            topo,
            known,
            extra=(
                f"    CertificateFile {certs[BASTION]}\n"
                f"Host {TARGET}\n"
                f"    ProxyJump {BASTION}\n"
                f"    CertificateFile {certs[TARGET]}\n"
                "Host *\n"
                f"    User {USER}\n"
                f"    IdentityFile {key}\n"
                "    IdentitiesOnly yes\n"
            ),
        )
        yield Lab(
            topo=topo, tmp=tmp, config=config, even=even, bastion=bastion, target=target,
            token=token, ssh_config=_names_config(tmp / "piu.cfg", topo, known), key=key,
            certs=certs,
        )  # fmt: skip
    finally:
        topo.teardown()
        if even is not None:
            even.stop()
        if hosts_dir is not None:
            shutil.rmtree(hosts_dir, ignore_errors=True)


def _certificate_blob(path: Path) -> str:
    return path.read_text().split()[1]


def test_the_bastion_certificate_names_one_target(lab: Lab) -> None:
    assert certificate_principals(_certificate_blob(lab.certs[BASTION])) == [
        f"{USER}@{BASTION}/{TARGET}"
    ]
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(lab.certs[BASTION])],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "force-command /usr/sbin/nologin" in shown
    assert "permit-port-forwarding" in shown and "permit-pty" not in shown


def test_ssh_jump_with_both_certificates_reaches_the_target(lab: Lab) -> None:
    # Only this login's lines: the daemons serve the whole module.
    marks = lab.bastion.log_mark(), lab.target.log_mark()
    result = lab.ssh(f"{USER}@{TARGET}", "hostname", "-I")
    assert result.returncode == 0, result.stderr
    assert lab.topo.target.address in result.stdout.split()
    lab.bastion.wait_for_log(
        rf"Accepted publickey for {USER} .* ID even:\S+:{USER}:bastion ", since=marks[0]
    )
    lab.target.wait_for_log(
        rf"Accepted publickey for {USER} from {lab.topo.bastion_inner_address} .* ID even:\S+ ",
        since=marks[1],
    )


def test_every_other_destination_through_the_bastion_is_refused(lab: Lab) -> None:
    # A real service on the bastion's own loopback, reachable from inside the bastion.
    lab.topo.popen(
        lab.topo.bastion,
        [sys.executable, "-c", ECHO, str(LOOPBACK_SERVICE_PORT), "bastion:"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    probe = (
        "import socket,time\n"
        "for _ in range(100):\n"
        "    try:\n"
        f"        c=socket.create_connection(('127.0.0.1', {LOOPBACK_SERVICE_PORT}), 1); break\n"
        "    except OSError: time.sleep(0.05)\n"
        "c.sendall(b'x'); print(c.recv(64).decode())\n"
    )
    assert lab.topo.run(lab.topo.bastion, [sys.executable, "-c", probe]).stdout == "bastion:x\n"
    # Sanity: the granted hop itself opens (the same command shape as the refusals below).
    ok = subprocess.run(
        ["ssh", "-F", str(lab.tmp / "user.cfg"), "-W", f"{TARGET}:22", BASTION],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert ok.stdout.startswith("SSH-2.0-"), ok.stderr
    for destination in (
        f"{TARGET}:2222",  # another port of the target
        f"{TARGET}:5432",
        f"{lab.topo.target.address}:22",  # the target, by address
        f"{OTHER}:22",  # another host behind the bastion
        f"{BASTION}:22",
        f"127.0.0.1:{LOOPBACK_SERVICE_PORT}",  # the bastion's own loopback
        f"localhost:{LOOPBACK_SERVICE_PORT}",
    ):
        hop = lab.ssh("-W", destination, BASTION)
        assert hop.returncode == 255, (destination, hop.stdout)
        assert "stdio forwarding failed" in hop.stderr, (destination, hop.stderr)
        assert "bastion:" not in hop.stdout
        host, port = destination.rsplit(":", 1)
        # Refused by sshd's permitopen (logged), not by authentication or the network.
        lab.bastion.wait_for_log(
            rf"to connect to host {re.escape(host)} port {port}, but the request was denied"
        )


def test_a_remote_listener_on_the_bastion_is_refused(lab: Lab) -> None:
    result = lab.ssh("-N", "-R", "127.0.0.1:2222:127.0.0.1:22", BASTION)
    assert result.returncode == 255
    assert "remote port forwarding failed" in result.stderr, result.stderr
    probe = "import socket; socket.create_connection(('127.0.0.1', 2222), 2)"
    assert lab.topo.run(lab.topo.bastion, [sys.executable, "-c", probe]).returncode != 0


def test_a_shell_on_the_bastion_is_refused(lab: Lab) -> None:
    for argv in ([BASTION, "id"], ["-tt", BASTION, "id"], [BASTION]):
        shell = lab.ssh(*argv)
        assert shell.returncode != 0, argv
        assert "uid=" not in shell.stdout


def test_piu_ssh_through_the_bastion_reuses_a_valid_certificate(lab: Lab) -> None:
    before = lab.grants()
    argv = [sys.executable, "-m", "piu", "ssh", TARGET]
    first = subprocess.run(
        [*argv, "--reason", "debug INC-9 via bastion", "--", "hostname", "-I"],
        capture_output=True, text=True, env=lab.env(), timeout=60, check=False,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert lab.topo.target.address in first.stdout.split()
    again = subprocess.run(
        [*argv, "--", "hostname"],
        capture_output=True, text=True, env=lab.env(), timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "using grant" in again.stderr
    assert lab.grants() == before + 1


def test_piu_tunnel_forwards_a_port_of_the_target_through_the_bastion(lab: Lab) -> None:
    lab.topo.popen(
        lab.topo.target,
        [sys.executable, "-c", ECHO, str(TARGET_SERVICE_PORT), "service:"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    local = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "piu", "request-access", TARGET, "tunnel INC-10 for psql",
            "--tunnel", f"{local}:{TARGET_SERVICE_PORT}", "--connect",
        ],
        env=lab.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
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
