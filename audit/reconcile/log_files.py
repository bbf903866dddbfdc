"""Stream the logins out of sshd log files: plain or gzip, syslog or `journalctl -o json`.

Constant memory in the file's length: a file is read in 1 MiB chunks (decompressed on the fly
when it starts with gzip's magic bytes, whatever its name), and only the lines that can hold
a login are decoded. The hot loop does not split lines: it counts newlines (for line numbers
and the line total) and jumps between occurrences of `Accepted ` with `bytes.find`, both in C,
so a million-line log costs a few scans of its bytes. In a journal export a message that
journalctl wrote as a byte array (`"MESSAGE":[…]`) is decoded and read too.

A line that holds `Accepted ` in an sshd message but cannot be read is not skipped: it comes
out as a `LoginLine` with `unreadable` set, so an unparsed login is reported, never lost.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import BinaryIO

import orjson

from audit.reconcile.sshd_log import (
    Accepted,
    Framed,
    UnreadableLine,
    frame_journal,
    frame_syslog,
    is_sshd,
    parse_accepted,
)

READ_CHUNK = 1024 * 1024
MAX_LINE = 1024 * 1024
"""A longer line is cut to this when decoded (sshd's own lines are at most 8 KiB)."""

_GZIP_MAGIC = b"\x1f\x8b"
_NEEDLE = b"Accepted "
_JOURNAL_BYTES = b'"MESSAGE":['
_LOGIN_TEXT = re.compile(rb"Accepted \S+ for ")


class LogReadError(Exception):
    """A log file cannot be read (I/O error, corrupt gzip); the message names the file."""


@dataclass(frozen=True, slots=True)
class LoginLine:
    """One `Accepted` line: where it is, its framing, and the login (or why it is unreadable)."""

    file: str
    line: int
    framed: Framed | None
    accepted: Accepted | None
    unreadable: str | None = None


@dataclass
class FileStats:
    lines: int = 0
    logins: int = 0


def read_logins(
    path: Path, *, reference: datetime | None, zone: tzinfo, stats: FileStats
) -> Iterator[LoginLine]:
    """Every sshd `Accepted` line of the file at `path`, in file order.

    `reference` is the latest time the log can hold (for RFC 3164 years); None means the
    file's modification time. Raises LogReadError.
    """
    name = str(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise LogReadError(f"cannot read {name}: {exc.strerror or exc}") from None
    with handle:
        try:
            when = reference or datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, UTC)
            stream: BinaryIO = handle
            if handle.read(2) == _GZIP_MAGIC:
                handle.seek(0)
                stream = gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[assignment]
            else:
                handle.seek(0)
            yield from _scan(stream, name, when, zone, stats)
        except OSError as exc:
            raise LogReadError(f"cannot read {name}: {exc.strerror or exc}") from None
        except (EOFError, zlib.error) as exc:
            raise LogReadError(f"cannot read {name}: corrupt gzip data ({exc})") from None


def _scan(
    stream: BinaryIO, name: str, reference: datetime, zone: tzinfo, stats: FileStats
) -> Iterator[LoginLine]:
    journal: bool | None = None  # decided by the first non-blank byte of the file
    pending = b""
    number = 0  # newlines before `buffer`
    while True:
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            break
        buffer = pending + chunk if pending else chunk
        cut = buffer.rfind(b"\n") + 1
        if cut == 0 and len(buffer) <= MAX_LINE:
            pending = buffer
            continue
        if cut == 0:  # an overlong line: read what it holds, drop the rest of its bytes
            cut = len(buffer)
        complete, pending = buffer[:cut], buffer[cut:]
        if journal is None:
            head = complete.lstrip()
            if head:
                journal = head.startswith(b"{")
        yield from _candidates(complete, name, number, bool(journal), reference, zone, stats)
        number += complete.count(b"\n")
    if pending:
        if journal is None:
            journal = pending.lstrip().startswith(b"{")
        yield from _candidates(pending, name, number, journal, reference, zone, stats)
        number += 1
    stats.lines += number


def _candidates(
    block: bytes,
    name: str,
    before: int,
    journal: bool,
    reference: datetime,
    zone: tzinfo,
    stats: FileStats,
) -> Iterator[LoginLine]:
    """The logins among the whole lines in `block`; `before` lines precede it in the file."""
    starts = _line_starts(block, _NEEDLE)
    if journal and _JOURNAL_BYTES in block:
        starts = sorted(set(starts) | set(_line_starts(block, _JOURNAL_BYTES)))
    counted, number = 0, before
    for start in starts:
        number += block.count(b"\n", counted, start)
        counted = start
        end = block.find(b"\n", start)
        raw = block[start : end if end != -1 else len(block)][:MAX_LINE]
        # Most `Accepted ` lines at LogLevel VERBOSE are `Accepted key …` or `Accepted
        # certificate ID …` steps: one byte-level search keeps them out of the parsers.
        if _LOGIN_TEXT.search(raw) is None and not (journal and _JOURNAL_BYTES in raw):
            continue
        found = _login(raw, name, number + 1, journal, reference, zone)
        if found is not None:
            stats.logins += 1
            yield found


def _line_starts(block: bytes, needle: bytes) -> list[int]:
    starts = []
    find, rfind = block.find, block.rfind
    position = find(needle)
    while position != -1:
        start = rfind(b"\n", 0, position) + 1
        starts.append(start)
        end = find(b"\n", position)
        if end == -1:
            break
        position = find(needle, end)
    return starts


def _login(
    raw: bytes, name: str, number: int, journal: bool, reference: datetime, zone: tzinfo
) -> LoginLine | None:
    try:
        framed = _frame(raw, journal, reference, zone)
    except UnreadableLine as exc:
        framed, problem = None, str(exc)
    else:
        problem = "no syslog framing"
    if framed is None:
        # Only a line that reads as an sshd login is worth reporting as unreadable.
        if b"sshd" in raw and _LOGIN_TEXT.search(raw):
            return LoginLine(name, number, None, None, f"line not understood: {problem}")
        return None
    if not is_sshd(framed.program):
        return None
    try:
        accepted = parse_accepted(framed.message)
    except UnreadableLine as exc:
        return LoginLine(name, number, framed, None, f"message not understood: {exc}")
    if accepted is None:
        return None
    return LoginLine(name, number, framed, accepted)


def _frame(raw: bytes, journal: bool, reference: datetime, zone: tzinfo) -> Framed | None:
    if journal:
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UnreadableLine("a journal line that is not JSON") from None
        return frame_journal(entry)
    # sshd escapes what it logs (strnvis), so its lines are ASCII; anything else is data.
    line = raw.decode("utf-8", "replace").rstrip("\r")
    return frame_syslog(line, reference, zone)
