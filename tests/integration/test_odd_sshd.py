"""A real OpenSSH sshd configured by `odd sshd-config` and `odd install` accepts exactly the
host-bound certificates Even would sign: `<login>@<this host>`, not revoked.

Skipped with a reason when not root or without sshd; failed instead when CI=true, so CI cannot
pass by skipping.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.sshd import (
    SshdHandle,
    SshdUnavailable,
    ensure_login_user,
    known_hosts_line,
    ssh_argv,
    start_sshd,
)

pytestmark = [pytest.mark.integration, pytest.mark.sshd]

HOSTNAME = "host-1.even.test"
LOGIN = "piutest"


@dataclass
class Lab:
    sshd: SshdHandle
    tmp: Path
    ca: Path
    user_key: Path
    known_hosts: Path

    def sign(self, name: str, *, principal: str, serial: int, key_id: str) -> Path:
        """Sign the user key with the CA as Even would; return the certificate path."""
        public = self.tmp / f"{name}.pub"
        public.write_bytes(self.user_key.with_suffix(".pub").read_bytes())
        _keygen("-s", str(self.ca), "-I", key_id, "-n", principal, "-z", str(serial),
                "-V", "-1m:+10m", str(public))  # fmt: skip
        return self.tmp / f"{name}-cert.pub"

    def ssh(self, certificate: Path, *command: str) -> subprocess.CompletedProcess[str]:
        argv = ssh_argv(
            self.sshd,
            login=LOGIN,
            hostname=HOSTNAME,
            identity=self.user_key,
            certificate=certificate,
            known_hosts=self.known_hosts,
            command=list(command),
        )
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _keygen(*args: str) -> None:
    subprocess.run(["ssh-keygen", "-q", *args], check=True, capture_output=True, timeout=30)


def _start(tmp: Path, ca: Path) -> SshdHandle:
    try:
        ensure_login_user(LOGIN)
        return start_sshd(tmp / "sshd", hostname=HOSTNAME, ca_file=ca.with_suffix(".pub"))
    except SshdUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"sshd unavailable in CI: {exc}")
        pytest.skip(f"sshd unavailable: {exc}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("odd-sshd")
    ca, user_key = tmp / "ca", tmp / "id_ed25519"
    for key in (ca, user_key):
        _keygen("-t", "ed25519", "-N", "", "-C", "", "-f", str(key))
    handle = _start(tmp, ca)
    try:
        known_hosts = tmp / "known_hosts"
        known_hosts.write_text(known_hosts_line(handle, HOSTNAME), encoding="ascii")
        yield Lab(handle, tmp, ca, user_key, known_hosts)
    finally:
        handle.stop()


def test_host_bound_certificate_logs_in(lab: Lab) -> None:
    cert = lab.sign("good", principal=f"{LOGIN}@{HOSTNAME}", serial=42, key_id="even:req-1:alice")
    result = lab.ssh(cert, "id")
    assert result.returncode == 0, result.stderr
    assert re.match(rf"uid=\d+\({LOGIN}\)", result.stdout)
    # The line Even's audit log joins to: key ID and serial of the certificate.
    lab.sshd.wait_for_log(
        rf"Accepted publickey for {LOGIN} from 127\.0\.0\.1 port \d+ ssh2: ED25519-CERT "
        r"SHA256:\S+ ID even:req-1:alice \(serial 42\) CA ED25519 SHA256:\S+"
    )


def test_certificate_for_another_host_is_refused(lab: Lab) -> None:
    cert = lab.sign(
        "other", principal=f"{LOGIN}@host-2.even.test", serial=43, key_id="even:req-2:alice"
    )
    result = lab.ssh(cert, "id")
    assert result.returncode == 255
    assert result.stdout == ""
    lab.sshd.wait_for_log(r"ID even:req-2:alice \(serial 43\)")
    log = lab.sshd.log_text()
    assert "Certificate does not contain an authorized principal" in log
    assert "Accepted publickey for piutest from 127.0.0.1" not in _lines_with(log, "serial 43")


def test_plain_login_principal_is_refused(lab: Lab) -> None:
    # odd prints only <login>@<host>; a certificate valid for the bare login on every host
    # that trusts the CA does not open this one.
    cert = lab.sign("bare", principal=LOGIN, serial=44, key_id="even:req-3:alice")
    assert lab.ssh(cert, "id").returncode == 255


def test_revoked_certificate_is_refused(lab: Lab) -> None:
    cert = lab.sign("revoked", principal=f"{LOGIN}@{HOSTNAME}", serial=45, key_id="even:req-4:a")
    spec = lab.tmp / "krl-spec"
    spec.write_text("serial: 45\n", encoding="ascii")
    # sshd re-reads the KRL at every authentication: no restart needed.
    _keygen("-k", "-f", str(lab.sshd.krl_file), "-s", str(lab.ca.with_suffix(".pub")),
            "-z", "2", str(spec))  # fmt: skip
    assert lab.ssh(cert, "id").returncode == 255
    assert "revoked by file" in lab.sshd.log_text()


def test_stop_ends_sessions_and_removes_the_wrapper(tmp_path: Path) -> None:
    ca, user_key = tmp_path / "ca", tmp_path / "id_ed25519"
    for key in (ca, user_key):
        _keygen("-t", "ed25519", "-N", "", "-C", "", "-f", str(key))
    handle = _start(tmp_path, ca)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(handle, HOSTNAME), encoding="ascii")
    lab = Lab(handle, tmp_path, ca, user_key, known_hosts)
    cert = lab.sign("long", principal=f"{LOGIN}@{HOSTNAME}", serial=7, key_id="even:req-5:a")
    argv = ssh_argv(
        handle,
        login=LOGIN,
        hostname=HOSTNAME,
        identity=user_key,
        certificate=cert,
        known_hosts=known_hosts,
        command="sleep 60",
    )
    client = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        handle.wait_for_log(r"Starting session: command for piutest")
        wrapper_dir = handle.wrapper_dir
        assert handle.principals_command.is_relative_to(wrapper_dir)
        started = time.monotonic()
        handle.stop()
        # The session's sshd and its `sleep` were ended, so the client sees the connection go.
        assert client.wait(timeout=15) == 255
        assert time.monotonic() - started < 15
        assert not wrapper_dir.exists()
        assert handle.process.poll() is not None
        handle.stop()  # idempotent
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        handle.stop()


def _lines_with(text: str, needle: str) -> str:
    return "\n".join(line for line in text.splitlines() if needle in line)
