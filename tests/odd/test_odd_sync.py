"""`odd sync` against a tiny Even stand-in on 127.0.0.1: it installs only good files, atomically,
keeps the last good ones on every kind of failure, and says why.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from even.krl import build_krl, ca_key_blob
from odd.cli import main
from odd.errors import UsageError
from odd.sync import (
    SYSTEMD_EXAMPLE,
    BadResponse,
    Syncer,
    SyncError,
    SyncSettings,
    check_even_url,
    check_interval,
    check_krl,
    empty_krl,
    parse_ca_keys,
    run_loop,
    stop_on_signals,
    write_atomically,
)

NOW = datetime(2025, 1, 2, tzinfo=UTC)
CA_TYPE = "text/plain; charset=utf-8"
KRL_TYPE = "application/octet-stream"


def _public_line(
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


CA_LINE = _public_line(ed25519.Ed25519PrivateKey.generate())
CA_LINE_2 = _public_line(ec.generate_private_key(ec.SECP256R1()))
CA_BLOB = ca_key_blob(CA_LINE)


def krl(generation: int, *serials: int) -> bytes:
    return build_krl([(CA_BLOB, serials)], generation=generation, generated_at=NOW)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    etag: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeEven:
    """What the stand-in answers per path; records each request's If-None-Match."""

    url: str = ""
    answers: dict[str, Answer] = field(default_factory=dict)
    honour_etags: bool = False
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    def serve(self, ca: bytes, krl_body: bytes, *, etags: bool = False) -> None:
        def tag(body: bytes) -> str | None:
            return f'"{hashlib.sha256(body).hexdigest()}"' if etags else None

        self.answers = {
            "/v1/ca": Answer(body=ca, content_type=CA_TYPE, etag=tag(ca)),
            "/v1/krl": Answer(body=krl_body, content_type=KRL_TYPE, etag=tag(krl_body)),
        }


@pytest.fixture
def even() -> Iterator[FakeEven]:
    state = FakeEven()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            match = self.headers.get("If-None-Match")
            state.seen.append((self.path, match))
            answer = state.answers.get(self.path, Answer(status=404))
            if (
                state.honour_etags
                and answer.etag
                and match
                and answer.etag in [t.strip() for t in match.split(",")]
            ):
                self.send_response(304)
                self.send_header("ETag", answer.etag)
                self.end_headers()
                return
            self.send_response(answer.status)
            if answer.content_type:
                self.send_header("Content-Type", answer.content_type)
            if answer.etag:
                self.send_header("ETag", answer.etag)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Files:
    ca: Path
    krl: Path

    def argv(self, url: str, *extra: str) -> list[str]:
        return ["sync", "--even-url", url, "--ca-file", str(self.ca), "--krl-file", str(self.krl),
                *extra]  # fmt: skip

    def snapshot(self) -> dict[Path, tuple[bytes, int]]:
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (self.ca, self.krl)}


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path / "even_user_ca.pub", tmp_path / "even_revoked.krl")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def installed(even: FakeEven, files: Files, capsys: pytest.CaptureFixture[str]) -> Files:
    """Good files from a first successful sync (generation 5)."""
    even.serve(f"{CA_LINE}\n".encode(), krl(5, 42))
    assert _run(capsys, *files.argv(even.url, "--once"))[0] == 0
    return files


def test_installs_good_files_and_logs_what_changed(
    even: FakeEven, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_body = f"{CA_LINE}\n{CA_LINE_2} even-next\n".encode()
    even.serve(ca_body, krl(3, 7, 8, 9))
    code, out, err = _run(capsys, *files.argv(even.url, "--once"))
    assert (code, out) == (0, "")
    assert files.ca.read_bytes() == ca_body
    assert files.krl.read_bytes() == krl(3, 7, 8, 9)
    for path in (files.ca, files.krl):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in files.ca.parent.iterdir()) == sorted(
        [files.ca.name, files.krl.name]
    )
    lines = err.splitlines()
    assert all(line.startswith("odd: sync: ") for line in lines)
    assert f"created {files.krl}: empty KRL" in err
    assert f"created {files.ca}: 2 CA key(s) (+ssh-ed25519 SHA256:" in err
    assert "+ecdsa-sha2-nistp256 SHA256:" in err
    assert f"updated {files.krl}: generation 0, 0 -> generation 3, 3 revoked serial(s)" in err


def test_unchanged_answers_write_nothing(
    even: FakeEven, installed: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    before = installed.snapshot()
    assert _run(capsys, *installed.argv(even.url)) == (0, "", "")
    assert installed.snapshot() == before


@pytest.mark.parametrize(
    ("ca", "krl_answer", "message"),
    [
        (Answer(500), Answer(503), "Even answered HTTP 500"),
        (
            Answer(body=b"\x00\xffgarbage", content_type=CA_TYPE),
            Answer(body=b"<html>oops</html>", content_type=KRL_TYPE),
            "KRL: bad magic",
        ),
        (Answer(content_type=CA_TYPE), Answer(content_type=KRL_TYPE), "empty body"),
        (
            Answer(body=b"<html/>", content_type="text/html"),
            Answer(body=krl(9), content_type="text/html"),
            "Content-Type is 'text/html', not application/octet-stream",
        ),
        (Answer(404), Answer(404), "Even answered HTTP 404"),
        (
            Answer(302, headers={"Location": "http://evil.example/v1/ca"}),
            Answer(302, headers={"Location": "http://evil.example/v1/krl"}),
            "redirect (302) to http://evil.example/v1/krl refused",
        ),
        (
            Answer(body=b"ssh-dss AAAAB3NzaC1kc3M= x\n", content_type=CA_TYPE),
            Answer(body=krl(9)[:-3], content_type=KRL_TYPE),
            "KRL: truncated",
        ),
        (
            Answer(body=f"{CA_LINE}".encode(), content_type=CA_TYPE),
            Answer(body=krl(9, 1) + b"\x01", content_type=KRL_TYPE),
            "KRL: truncated",
        ),
        (
            Answer(body=f"{CA_LINE}\n\n".encode(), content_type=CA_TYPE),
            Answer(body=krl(9, 1) + b"\x04\0\0\0\0", content_type=KRL_TYPE),
            "KRL: section type 4",
        ),
    ],
    ids=[
        "5xx",
        "garbage",
        "empty",
        "wrong-type",
        "404",
        "redirect",
        "dsa-truncated",
        "no-newline-trailing",
        "blank-line-signature",
    ],
)
def test_bad_answers_keep_the_last_good_files(
    even: FakeEven,
    installed: Files,
    capsys: pytest.CaptureFixture[str],
    ca: Answer,
    krl_answer: Answer,
    message: str,
) -> None:
    before = installed.snapshot()
    even.answers = {"/v1/ca": ca, "/v1/krl": krl_answer}
    code, out, err = _run(capsys, *installed.argv(even.url, "--once"))
    assert (code, out) == (1, "")
    assert installed.snapshot() == before
    assert err.startswith("odd: error: ") and err.count("\n") == 1
    assert message in err
    assert "/v1/ca: " in err and f"kept {installed.ca}" in err
    assert "/v1/krl: " in err and f"kept {installed.krl}" in err
    assert sorted(p.name for p in installed.ca.parent.iterdir()) == sorted(
        [installed.ca.name, installed.krl.name]
    )


def test_stopped_even_keeps_files(
    even: FakeEven, installed: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    before = installed.snapshot()
    stopped = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{stopped.server_address[1]}"
    stopped.server_close()  # nothing listens there any more
    code, _, err = _run(capsys, *installed.argv(url, "--once"))
    assert code == 1
    assert installed.snapshot() == before
    assert "cannot reach Even (" in err and "refused" in err.lower()


def test_stopped_even_on_a_new_host_still_creates_an_empty_krl(
    files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    stopped = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{stopped.server_address[1]}"
    stopped.server_close()
    code, _, err = _run(capsys, *files.argv(url))
    assert code == 1
    assert check_krl(files.krl.read_bytes()).generation == 0
    assert not files.ca.exists()
    assert f"created {files.krl}: empty KRL" in err and "odd: error: " in err
    assert f"{files.ca} not written" in err and f"kept {files.krl}" in err


def test_older_krl_generation_is_refused_newer_and_equal_accepted(
    even: FakeEven, installed: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    before = installed.snapshot()
    even.serve(f"{CA_LINE}\n".encode(), krl(4))  # generation 4 < 5: a replay un-revoking 42
    code, _, err = _run(capsys, *installed.argv(even.url))
    assert code == 1
    assert installed.snapshot() == before
    assert "KRL generation 4 is older than the installed 5" in err
    assert f"delete {installed.krl}" in err
    even.serve(f"{CA_LINE}\n".encode(), krl(5, 42, 43))
    assert _run(capsys, *installed.argv(even.url))[0] == 0
    even.serve(f"{CA_LINE}\n".encode(), krl(6, 42, 43, 44))
    code, _, err = _run(capsys, *installed.argv(even.url))
    assert code == 0
    assert "generation 5, 2 -> generation 6, 3 revoked serial(s)" in err
    assert installed.krl.read_bytes() == krl(6, 42, 43, 44)


def test_304_leaves_files_untouched(even: FakeEven, files: Files) -> None:
    even.serve(f"{CA_LINE}\n".encode(), krl(2, 1), etags=True)
    even.honour_etags = True
    log: list[str] = []
    syncer = Syncer(SyncSettings(even.url, files.ca, files.krl), log=log.append)
    syncer.sync_once()
    before, logged = files.snapshot(), len(log)
    syncer.sync_once()
    assert files.snapshot() == before
    assert len(log) == logged
    second_round = even.seen[-2:]
    assert [path for path, _ in second_round] == ["/v1/ca", "/v1/krl"]
    for path, match in second_round:
        assert match == even.answers[path].etag
    # A fresh run (a --once timer) sends the SHA-256 of the installed bytes, which Even's ETag
    # matches when it is the quoted SHA-256 of the body.
    Syncer(SyncSettings(even.url, files.ca, files.krl), log=log.append).sync_once()
    assert files.snapshot() == before
    assert [m for _, m in even.seen[-2:]] == [even.answers[p].etag for p in ("/v1/ca", "/v1/krl")]


def test_opaque_etags_are_remembered_only_for_what_is_installed(
    even: FakeEven, files: Files
) -> None:
    even.serve(f"{CA_LINE}\n".encode(), krl(2, 1))
    even.answers["/v1/krl"].etag = '"gen-2"'
    even.honour_etags = True
    syncer = Syncer(SyncSettings(even.url, files.ca, files.krl), log=_ignore)
    syncer.sync_once()
    syncer.sync_once()
    assert even.seen[-1][1] is not None and even.seen[-1][1].startswith('"gen-2", "')
    # Even moves back to an older KRL: refused, and its ETag is not remembered.
    even.answers["/v1/krl"] = Answer(body=krl(1), content_type=KRL_TYPE, etag='"gen-1"')
    with pytest.raises(SyncError, match="older"):
        syncer.sync_once()
    with pytest.raises(SyncError, match="older"):
        syncer.sync_once()
    assert "gen-1" not in (even.seen[-1][1] or "")


def test_304_to_an_unconditional_request_is_an_error(even: FakeEven, files: Files) -> None:
    even.answers = {"/v1/ca": Answer(304), "/v1/krl": Answer(304)}
    with pytest.raises(SyncError, match="304 Not Modified to a request without If-None-Match"):
        Syncer(SyncSettings(even.url, files.ca, files.krl), log=_ignore).sync_once()
    assert not files.ca.exists()


def test_unreadable_installed_krl_is_replaced_only_by_a_good_one(
    even: FakeEven, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    files.krl.write_bytes(b"corrupt")
    even.serve(f"{CA_LINE}\n".encode(), b"also corrupt")
    assert _run(capsys, *files.argv(even.url))[0] == 1
    assert files.krl.read_bytes() == b"corrupt"  # never replaced by an empty (open) KRL
    even.serve(f"{CA_LINE}\n".encode(), krl(1, 5))
    code, _, err = _run(capsys, *files.argv(even.url))
    assert code == 0 and "unreadable, ? -> generation 1" in err


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://even.example.org", "must use https"),
        ("http://10.0.0.1:8000", "must use https"),
        ("ftp://127.0.0.1/", "need https://"),
        ("https://user:pw@even.example.org", "no user info"),
        ("https://even.example.org/?x=1", "no user info, query or fragment"),
        ("https://even.example.org:99999", "invalid port"),
        ("https://", "need https://"),
    ],
)
def test_refused_urls(url: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        check_even_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://even.example.org/",
        "http://127.0.0.1:8080",
        "http://[::1]:1/even",
        "http://localhost",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert check_even_url(url) == url.rstrip("/")


def test_usage_errors_exit_2(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "sync", "--ca-file", str(files.ca))
    assert code == 2 and "--even-url" in err
    code, _, err = _run(capsys, *files.argv("http://even.example.org"))
    assert code == 2 and err.startswith("odd: error: ") and "https" in err
    cacert = files.ca.parent / "ca.pem"
    cacert.write_text("x")
    code, _, err = _run(capsys, *files.argv("http://127.0.0.1:1", "--cacert", str(cacert)))
    assert code == 2 and "--cacert" in err
    code, _, err = _run(capsys, *files.argv("https://even.example.org", "--cacert", str(cacert)))
    assert code == 2 and "cannot load CA certificates" in err
    assert not files.krl.exists()
    with pytest.raises(SystemExit):
        main([*files.argv("https://e.example.org"), "--once", "--interval", "5"])


def test_systemd_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "sync", "--systemd-example")
    assert code == 0 and out == SYSTEMD_EXAMPLE
    assert "[Timer]" in out and "odd sync --once --even-url https://" in out


def test_interval_loop_syncs_until_stopped(even: FakeEven, files: Files) -> None:
    even.serve(f"{CA_LINE}\n".encode(), krl(1))
    log: list[str] = []
    syncer = Syncer(SyncSettings(even.url, files.ca, files.krl), log=log.append)
    stop = threading.Event()
    thread = threading.Thread(target=run_loop, args=(syncer, 0.02, stop))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while len(even.seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        even.answers["/v1/krl"] = Answer(500)  # a failing round is logged, not fatal
        while not any("HTTP 500" in line for line in log) and time.monotonic() < deadline:
            time.sleep(0.01)
        even.serve(f"{CA_LINE}\n".encode(), krl(2, 3))
        while files.krl.read_bytes() != krl(2, 3) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert files.krl.read_bytes() == krl(2, 3)
    assert any(line.startswith("error: ") and "HTTP 500" in line for line in log)
    for bad in (0.1, 0, -1, 10**6, float("nan")):
        with pytest.raises(UsageError):
            check_interval(bad)
    assert check_interval(60) == 60


def test_sigterm_sets_the_stop_event_and_handlers_are_restored() -> None:
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGTERM) is previous


def test_write_atomically_mode_and_no_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "f"
    old_umask = os.umask(0o077)
    try:
        write_atomically(target, b"one")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    with pytest.raises(SyncError):
        write_atomically(target, b"")
    with pytest.raises(OSError):
        write_atomically(tmp_path / "missing-dir" / "f", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_parse_ca_keys() -> None:
    rsa_line = _public_line(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    keys = parse_ca_keys(f"{CA_LINE}\n{CA_LINE_2} a comment\n{rsa_line}\n".encode())
    assert [k.key_type for k in keys] == ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"]
    short_rsa = _public_line(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    kind, data = CA_LINE.split()
    dsa_line = f"ssh-dss {data}"
    cert = f"ssh-ed25519-cert-v01@openssh.com {data}"
    for bad in [
        short_rsa, dsa_line, cert, f"ssh-rsa {data}", f"{kind} {data[:-4]}", kind,
        f"{CA_LINE} bad\x07comment", f"{CA_LINE}\r",
    ]:  # fmt: skip
        with pytest.raises(BadResponse):
            parse_ca_keys(f"{bad}\n".encode())
    for bad_body in [b"", b"\n", f"{CA_LINE}".encode(), f"{CA_LINE}\n\n".encode(), b"\xff\n"]:
        with pytest.raises(BadResponse):
            parse_ca_keys(bad_body)


def test_check_krl_accepts_even_and_empty_krls() -> None:
    many = build_krl(
        [(CA_BLOB, [*range(1, 300), *range(1000, 1100, 3), 2**53 - 1])],
        generation=7,
        generated_at=NOW,
    )
    summary = check_krl(many)
    assert (summary.generation, summary.serials, summary.sections) == (7, 299 + 34 + 1, 1)
    assert check_krl(empty_krl(0)).serials == 0
    assert check_krl(empty_krl(1_700_000_000, generation=3)).generation == 3


def _krl_with(kind: int, payload: bytes, ca_blob: bytes = CA_BLOB) -> bytes:
    """An empty KRL plus one certificate section holding one subsection."""

    def string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    section = string(ca_blob) + string(b"") + bytes([kind]) + string(payload)
    return empty_krl(0, generation=1) + b"\x01" + string(section)


@pytest.mark.parametrize(
    "body",
    [
        # Each makes OpenSSH refuse the whole file (and so every login).
        _krl_with(0x20, struct.pack(">QQ", 5, 0)),
        _krl_with(0x22, struct.pack(">QI", 0, 1) + b"\x01"),
        _krl_with(0x22, struct.pack(">QI", 5, 1) + b"\x80"),
        _krl_with(0x21, struct.pack(">QQ", 9, 8)),
        _krl_with(0x39, b""),
        _krl_with(0x20, b"\0\0\0\x05"),
        _krl_with(0x20, struct.pack(">Q", 5), ca_blob=b"\0\0\0\x07ssh-dss" + CA_BLOB[15:]),
        _krl_with(0x20, struct.pack(">Q", 5), ca_blob=b""),
        _krl_with(0x20, struct.pack(">Q", 5))[:-1],
    ],
    ids=[
        "list-serial-0",
        "bitmap-serial-0",
        "negative-bitmap",
        "backwards-range",
        "unknown-subsection",
        "short-list",
        "dsa-ca",
        "empty-ca",
        "truncated",
    ],
)
def test_check_krl_refuses_what_openssh_would(body: bytes) -> None:
    with pytest.raises(BadResponse):
        check_krl(body)


def test_check_krl_accepts_a_krl_written_by_our_helper() -> None:
    assert check_krl(_krl_with(0x20, struct.pack(">QQ", 5, 6))).serials == 2


def test_odd_sync_interval_process_ends_cleanly_on_sigterm(even: FakeEven, files: Files) -> None:
    even.serve(f"{CA_LINE}\n".encode(), krl(1))
    argv = [sys.executable, "-m", "odd", *files.argv(even.url, "--interval", "60")]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while _read(files.krl) != krl(1) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _read(files.krl) == krl(1)
        process.send_signal(signal.SIGTERM)  # mid-sleep: must not wait out the 60 s
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    assert f"odd: sync: created {files.ca}" in process.stderr.read()
    process.stderr.close()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _ignore(_line: str) -> None:
    pass


def test_hostile_headers_are_neither_echoed_raw_nor_sent_back(even: FakeEven, files: Files) -> None:
    even.serve(f"{CA_LINE}\n".encode(), krl(1))
    even.answers["/v1/krl"].etag = '"x" , "\x1b[31m"'
    even.honour_etags = True
    syncer = Syncer(SyncSettings(even.url, files.ca, files.krl), log=_ignore)
    syncer.sync_once()
    syncer.sync_once()
    assert even.seen[-1][1] == f'"{hashlib.sha256(krl(1)).hexdigest()}"'
    even.answers["/v1/krl"] = Answer(301, headers={"Location": "http://x/\x1b[2J"})
    with pytest.raises(SyncError) as caught:
        syncer.sync_once()
    assert "\x1b" not in str(caught.value) and "http://x/?[2J" in str(caught.value)
