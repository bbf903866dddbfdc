"""Revocation that a real OpenSSH sshd enforces: KRLs from even.krl, installed by `odd sync`.

A stand-in for Even's `GET /v1/ca` and `GET /v1/krl` on 127.0.0.1 serves bytes from even.krl;
`odd sync --once` (a real process) writes the files sshd's TrustedUserCAKeys and RevokedKeys
name. A certificate logs in; once its serial is in the KRL and odd has synced, sshd refuses it
("revoked by file") while another certificate from the same CA keeps working.

Skipped with a reason when not root or without sshd; failed instead when CI=true.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from even.krl import build_krl, ca_key_blob
from harness.sshd import (
    SshdHandle,
    SshdUnavailable,
    ensure_login_user,
    known_hosts_line,
    ssh_argv,
    start_sshd,
)
from tests.conftest import requires_real_component

pytestmark = [pytest.mark.integration, pytest.mark.sshd]

HOSTNAME = "host-1.even.test"
LOGIN = "piutest"


@dataclass
class FakeEven:
    """Serves `/v1/ca` and `/v1/krl` the way SPEC §6 says Even does."""

    ca: bytes
    krl: bytes
    url: str = ""
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    def start(self) -> None:
        even = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                routes = {
                    "/v1/ca": (even.ca, "text/plain; charset=utf-8"),
                    "/v1/krl": (even.krl, "application/octet-stream"),
                }
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, content_type = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Lab:
    sshd: SshdHandle
    even: FakeEven
    tmp: Path
    ca: Path
    ca_blob: bytes
    ca_file: Path
    krl_file: Path
    user_key: Path
    known_hosts: Path

    def sign(self, name: str, serial: int) -> Path:
        public = self.tmp / f"{name}.pub"
        public.write_bytes(self.user_key.with_suffix(".pub").read_bytes())
        _keygen("-s", str(self.ca), "-I", f"even:{name}", "-n", f"{LOGIN}@{HOSTNAME}",
                "-z", str(serial), "-V", "-1m:+10m", str(public))  # fmt: skip
        return self.tmp / f"{name}-cert.pub"

    def ssh(self, certificate: Path) -> subprocess.CompletedProcess[str]:
        argv = ssh_argv(
            self.sshd,
            login=LOGIN,
            hostname=HOSTNAME,
            identity=self.user_key,
            certificate=certificate,
            known_hosts=self.known_hosts,
            command="id -un",
        )
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    def odd_sync(self) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "odd", "sync", "--once", "--even-url", self.even.url,
                "--ca-file", str(self.ca_file), "--krl-file", str(self.krl_file)]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _keygen(*args: str) -> None:
    subprocess.run(["ssh-keygen", "-q", *args], check=True, capture_output=True, timeout=30)


def _krl(generation: int, ca_blob: bytes, *serials: int) -> bytes:
    return build_krl([(ca_blob, serials)], generation=generation, generated_at=datetime.now(UTC))


@pytest.fixture
def lab(tmp_path: Path, real_sshd_available: None) -> Iterator[Lab]:
    ca, user_key = tmp_path / "ca", tmp_path / "id_ed25519"
    for key in (ca, user_key):
        _keygen("-t", "ed25519", "-N", "", "-C", "", "-f", str(key))
    ca_line = ca.with_suffix(".pub").read_text(encoding="ascii").strip()
    ca_blob = ca_key_blob(ca_line)
    even = FakeEven(ca=f"{ca_line}\n".encode(), krl=_krl(1, ca_blob))
    even.start()
    etc = tmp_path / "etc-ssh"
    etc.mkdir()
    lab_files = {"ca_file": etc / "even_user_ca.pub", "krl_file": etc / "even_revoked.krl"}
    try:
        # odd writes both files before sshd first reads them, as on a freshly set-up host.
        first = subprocess.run(
            [sys.executable, "-m", "odd", "sync", "--once", "--even-url", even.url,
             "--ca-file", str(lab_files["ca_file"]), "--krl-file", str(lab_files["krl_file"])],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        try:
            ensure_login_user(LOGIN)
            handle = start_sshd(
                tmp_path / "sshd",
                hostname=HOSTNAME,
                ca_file=lab_files["ca_file"],
                krl_file=lab_files["krl_file"],
            )
        except SshdUnavailable as exc:
            requires_real_component(str(exc))
        try:
            known_hosts = tmp_path / "known_hosts"
            known_hosts.write_text(known_hosts_line(handle, HOSTNAME), encoding="ascii")
            yield Lab(handle, even, tmp_path, ca, ca_blob, user_key=user_key,
                      known_hosts=known_hosts, **lab_files)  # fmt: skip
        finally:
            handle.stop()
    finally:
        even.stop()


def test_revoked_serial_is_refused_after_odd_sync(lab: Lab) -> None:
    assert lab.sshd.krl_file == lab.krl_file.resolve()
    doomed, other = lab.sign("doomed", 1001), lab.sign("other", 1002)
    for cert in (doomed, other):
        result = lab.ssh(cert)
        assert (result.returncode, result.stdout) == (0, f"{LOGIN}\n"), result.stderr

    # Even revokes serial 1001: a new KRL generation. Nothing changes on the host until sync.
    lab.even.krl = _krl(2, lab.ca_blob, 1001)
    assert lab.ssh(doomed).returncode == 0
    synced = lab.odd_sync()
    assert synced.returncode == 0, synced.stderr
    assert f"updated {lab.krl_file}: generation 1, 0 -> generation 2, 1 revoked serial(s)" in (
        synced.stderr
    )

    refused = lab.ssh(doomed)
    assert (refused.returncode, refused.stdout) == (255, "")
    # sshd names the KRL, then the refused certificate (both certificates share one user key).
    lab.sshd.wait_for_log(
        rf"revoked by file {re.escape(str(lab.krl_file.resolve()))}\n"
        r"Failed publickey for piutest from 127\.0\.0\.1 port \d+ ssh2: ED25519-CERT \S+ "
        r"ID even:doomed \(serial 1001\)"
    )
    result = lab.ssh(other)
    assert (result.returncode, result.stdout) == (0, f"{LOGIN}\n"), result.stderr

    # Even goes bad (garbage KRL): odd keeps the good file, so 1001 stays revoked.
    lab.even.krl = b"garbage"
    failed = lab.odd_sync()
    assert failed.returncode == 1
    assert "odd: error: " in failed.stderr and "KRL: bad magic" in failed.stderr
    assert lab.ssh(doomed).returncode == 255
    assert lab.ssh(other).returncode == 0
