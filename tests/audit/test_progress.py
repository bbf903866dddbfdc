"""`even-audit export` and `verify` show progress on a terminal for big logs, else nothing."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from audit.progress import Progress
from audit.signing import AuditSigner
from bench.audit_verify import fill_database, write_export
from tests.audit.auditlog_cases import new_signer

BIG = 105_000  # just over the ~100k records at which the line appears


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_below_the_threshold_and_off_a_terminal() -> None:
    ticks = iter(range(1000))
    screen = Terminal()
    progress = Progress("x", screen, threshold=10, interval=0, clock=lambda: next(ticks))
    progress.advance(9, 90)
    assert screen.getvalue() == ""
    progress.advance(1, 10)
    assert "x: 10 lines" in screen.getvalue()
    progress.done()
    assert screen.getvalue().endswith("\r\x1b[K")
    piped = io.StringIO()
    quiet = Progress("x", piped, threshold=0, interval=0)
    quiet.chunk(b"a\nb\n")
    quiet.done()
    assert piped.getvalue() == "" and quiet.records == 0


def test_redraws_at_most_every_interval() -> None:
    now = [0.0]
    screen = Terminal()
    progress = Progress(
        "x", screen, total_records=100, threshold=0, interval=1, clock=lambda: now[0]
    )
    for _ in range(50):
        progress.advance(1, 1)
    assert screen.getvalue().count("\r\x1b[Kx:") == 1
    now[0] = 2.0
    progress.advance(1, 1)
    assert screen.getvalue().count("\r\x1b[Kx:") == 2 and "(51%)" in screen.getvalue()


def _run(argv: list[str], *, terminal: bool) -> tuple[int, bytes, bytes]:
    """Run the CLI with stderr on a pseudo-terminal (or a pipe); stdout is always a pipe."""
    if not terminal:
        done = subprocess.run(argv, capture_output=True, timeout=300, check=False)
        return done.returncode, done.stdout, done.stderr
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower)
        os.close(follower)
        screen = b""
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            screen += data
        out = process.stdout.read() if process.stdout else b""
        return process.wait(timeout=300), out, screen
    finally:
        os.close(leader)


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, AuditSigner]:
    directory = tmp_path_factory.mktemp("big")
    signer = new_signer()
    log = directory / "audit.jsonl"
    write_export(log, BIG, signer)
    key = directory / "audit.pub"
    key.write_bytes(signer.public_pem())
    return log, key, signer


def test_verify_shows_progress_on_a_terminal_only(big_log: tuple[Path, Path, AuditSigner]) -> None:
    log, key, _ = big_log
    argv = [sys.executable, "-m", "audit.cli", "verify", str(log), "--public-key", str(key)]
    code, out, screen = _run(argv, terminal=True)
    assert code == 0, screen
    assert out.startswith(f"VALID: {BIG} records".encode())
    assert b"even-audit: verify: " in screen and b"%)" in screen
    assert screen.endswith(b"\r\x1b[K")  # the line is cleared at the end
    code, out, err = _run(argv, terminal=False)
    assert code == 0 and err == b""


def test_database_export_shows_progress(
    tmp_path: Path, big_log: tuple[Path, Path, AuditSigner]
) -> None:
    url = f"sqlite:///{tmp_path / 'even.db'}"
    fill_database(url, BIG, big_log[2])
    out = tmp_path / "export.jsonl"
    argv = [sys.executable, "-m", "audit.cli", "export", "--database", url, "-o", str(out)]
    code, _, screen = _run(argv, terminal=True)
    assert code == 0, screen
    assert (b"even-audit: export: " in screen and b"(100%)" in screen) or b"%)" in screen
    assert out.read_bytes().count(b"\n") > BIG
