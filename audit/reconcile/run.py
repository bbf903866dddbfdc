"""The work behind `even-audit reconcile` (audit.reconcile.command parses the arguments).

Order of work: the export is verified and indexed in the same single read (audit.verify and
grants_index see the same chunks); an INVALID export stops everything (exit 2, nothing is
reconciled against records that cannot be trusted). Then each log file is streamed and each
login written as soon as it is classified; the unused grants and a summary come last.

Exit codes (SPEC §14): 0 when every login is explained, 1 when any is not (or a login line
could not be read, which is counted as unexplained: an unread login is not a justified one),
2 on usage or I/O errors, a missing or corrupt file, or an INVALID export.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn

import click

from audit.reconcile.classify import UNEXPLAINED, Verdict, classify
from audit.reconcile.grants_index import GrantsIndex, IndexBuilder
from audit.reconcile.log_files import FileStats, LoginLine, LogReadError, read_logins
from audit.reconcile.report import Report

if TYPE_CHECKING:
    from audit.checkpoint import PublicKeys

READ_CHUNK = 1024 * 1024


class HostUnknown(Exception):
    """A login line without a host field, and no --host to stand in for it."""


def run(
    export: Path,
    key_files: tuple[Path, ...],
    log_files: tuple[Path, ...],
    host: str | None,
    output_format: str,
    log_end: str | None,
    zone_name: str,
) -> NoReturn:
    """Reconcile and exit with the command's code."""
    from audit.cli import _load_keys

    zone = _zone(zone_name)
    reference = _reference(log_end)
    keys = _load_keys(key_files)
    verdict, index = _verify_and_index(export, keys)
    out = sys.stdout

    def write(line: str) -> None:
        out.write(line + "\n")  # not click.echo: it flushes every line

    report = Report(write, json_lines=output_format == "json")
    lines = 0
    try:
        for path in log_files:
            stats = FileStats()
            for found in read_logins(path, reference=reference, zone=zone, stats=stats):
                _one(report, found, host, index)
            lines += stats.lines
    except LogReadError as exc:
        _fail(str(exc))
    except HostUnknown as exc:
        _fail(str(exc))
    except BrokenPipeError:
        _closed_output()
    try:
        for grant in index.unused():
            report.unused_grant(grant)
        report.summary(export=verdict, lines=lines, grants=len(index.grants), files=len(log_files))
        out.flush()
    except BrokenPipeError:
        _closed_output()
    sys.exit(0 if report.all_explained() else 1)


def _closed_output() -> NoReturn:
    # The reader went away (`| head`): the report is incomplete, so no verdict either way.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(2)


def _one(report: Report, found: LoginLine, host: str | None, index: GrantsIndex) -> None:
    framed, accepted = found.framed, found.accepted
    if framed is None or accepted is None:
        verdict = Verdict(UNEXPLAINED, found.unreadable or "unreadable")
        when = framed.time if framed is not None else None
        report.login(verdict, accepted, time=when, host=host, file=found.file, line=found.line)
        return
    seen_on = framed.host or host
    if seen_on is None:
        raise HostUnknown(
            f"{found.file} line {found.line}: the line names no host; pass --host NAME"
        )
    verdict = classify(accepted, framed.time, framed.precision, seen_on, index)
    report.login(
        verdict, accepted, time=framed.time, host=seen_on, file=found.file, line=found.line
    )


def _verify_and_index(export: Path, keys: PublicKeys) -> tuple[str, GrantsIndex]:
    from audit.verify import Valid, verify_jsonl

    builder = IndexBuilder()
    try:
        with export.open("rb") as handle:
            result = verify_jsonl(_tee(handle, builder), keys)
    except OSError as exc:
        _fail(f"cannot read {export}: {exc.strerror or exc}")
    if not isinstance(result, Valid):
        _fail(f"{export}: {result}; nothing reconciled")
    return str(result), builder.finish()


def _tee(handle: IO[bytes], builder: IndexBuilder) -> Iterator[bytes]:
    while chunk := handle.read(READ_CHUNK):
        builder.feed(chunk)
        yield chunk


def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f"--timezone: unknown time zone {name!r}")


def _reference(log_end: str | None) -> datetime | None:
    if log_end is None:
        return None
    try:
        moment = datetime.fromisoformat(log_end)
    except ValueError:
        _fail(f"--log-end: not an RFC 3339 time: {log_end!r}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _fail(message: str) -> NoReturn:
    click.echo(f"even-audit: error: {message}", err=True)
    sys.exit(2)
