"""Write the reconciliation as it is computed: a table for people, JSON Lines for SIEMs.

Streaming: each login is written when it is classified, then the unused grants, then one
summary, so memory stays flat however long the logs are. Every text that came from a log or
a record is escaped in the table (controls and bidi characters, as `even-audit show` does);
JSON escapes by construction.

JSON Lines, one object per line, `kind` first:
- `{"kind": "login", "class", "reason", "time", "host", "user", "method", "source", "port",
  "key_type", "fingerprint", "key_id", "serial", "ca_key_type", "ca_fingerprint", "file",
  "line", "grant"}` where `grant` is null or `{"seq", "request_id", "username", "login",
  "hostname", "mode", "valid_after", "valid_before", "revoked_at"}`;
- `{"kind": "grant", "class": "unused", …the same grant members}`;
- `{"kind": "summary", "export", "lines", "logins": {class: count}, "grants", "unused",
  "files"}`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from audit.reconcile.classify import LOGIN_CLASSES, UNUSED, Verdict
from audit.reconcile.grants_index import Grant
from audit.reconcile.sshd_log import Accepted
from audit.show import escape_text as _escape_text

Write = Callable[[str], None]


class Report:
    """Counts as it goes; `text` or `json` decides how each item is written."""

    def __init__(self, write: Write, *, json_lines: bool) -> None:
        self._write = write
        self._json = json_lines
        self.counts = dict.fromkeys(LOGIN_CLASSES, 0)
        self.unused = 0
        self._header_written = False

    def login(
        self,
        verdict: Verdict,
        accepted: Accepted | None,
        *,
        time: float | None,
        host: str | None,
        file: str,
        line: int,
    ) -> None:
        self.counts[verdict.cls] += 1
        if self._json:
            self._write_json(_login_object(verdict, accepted, time, host, file, line))
            return
        if not self._header_written:
            self._write("CLASS  TIME  HOST  USER  METHOD  SOURCE  KEY  GRANT  REASON  WHERE")
            self._header_written = True
        key = "-"
        if accepted is not None and accepted.key_id is not None:
            key = f"{escape_text(accepted.key_id)}#{accepted.serial}"
        elif accepted is not None and accepted.fingerprint is not None:
            key = escape_text(accepted.fingerprint)
        self._write(
            "  ".join(
                (
                    verdict.cls,
                    _iso(time),
                    escape_text(host),
                    escape_text(accepted.user if accepted else None),
                    escape_text(accepted.method if accepted else None),
                    escape_text(accepted.source if accepted else None),
                    key,
                    _grant_name(verdict.grant),
                    escape_text(verdict.reason or None),
                    f"{escape_text(file)}:{line}",
                )
            )
        )

    def unused_grant(self, grant: Grant) -> None:
        self.unused += 1
        if self._json:
            self._write_json({"kind": "grant", "class": UNUSED, **_grant_object(grant)})
            return
        if self.unused == 1:
            self._write("")
            self._write("UNUSED GRANTS")
            self._write("SEQ  REQUEST  USER  LOGIN@HOST  MODE  VALID_AFTER  VALID_BEFORE")
        target = f"{escape_text(grant.login)}@{escape_text(grant.hostname)}"
        self._write(
            "  ".join(
                (
                    str(grant.seq),
                    escape_text(grant.request_id),
                    escape_text(grant.username),
                    target,
                    grant.mode,
                    escape_text(grant.window_text[0]),
                    escape_text(grant.window_text[1]),
                )
            )
        )

    def summary(self, *, export: str, lines: int, grants: int, files: int) -> None:
        logins = sum(self.counts.values())
        if self._json:
            self._write_json(
                {
                    "kind": "summary",
                    "export": export,
                    "files": files,
                    "lines": lines,
                    "logins": dict(self.counts),
                    "grants": grants,
                    "unused": self.unused,
                }
            )
            return
        parts = ", ".join(f"{count} {cls}" for cls, count in self.counts.items())
        self._write("")
        self._write(export)
        self._write(
            f"{logins} logins in {lines} lines of {files} file(s): {parts}; "
            f"{grants} grants, {self.unused} unused"
        )

    def all_explained(self) -> bool:
        return all(count == 0 for cls, count in self.counts.items() if cls != "explained")

    def _write_json(self, obj: dict[str, Any]) -> None:
        self._write(orjson.dumps(obj).decode())


def _login_object(
    verdict: Verdict,
    accepted: Accepted | None,
    time: float | None,
    host: str | None,
    file: str,
    line: int,
) -> dict[str, Any]:
    a = accepted if accepted is not None else _NOTHING
    grant = verdict.grant
    return {
        "kind": "login",
        "class": verdict.cls,
        "reason": verdict.reason or None,
        "time": _iso(time) if time is not None else None,
        "host": host,
        "user": a.user,
        "method": a.method,
        "source": a.source,
        "port": a.port,
        "key_type": a.key_type,
        "fingerprint": a.fingerprint,
        "key_id": a.key_id,
        "serial": a.serial,
        "ca_key_type": a.ca_key_type,
        "ca_fingerprint": a.ca_fingerprint,
        "file": file,
        "line": line,
        "grant": _grant_object(grant) if grant is not None else None,
    }


class _Nothing:
    """Stands for the login of a line that could not be read: every field is null."""

    user = method = source = port = key_type = fingerprint = key_id = serial = None
    ca_key_type = ca_fingerprint = None


_NOTHING = _Nothing()


def _grant_object(grant: Grant) -> dict[str, Any]:
    return {
        "seq": grant.seq,
        "request_id": grant.request_id,
        "username": grant.username,
        "login": grant.login,
        "hostname": grant.hostname,
        "mode": grant.mode,
        "key_id": grant.key_id,
        "serial": grant.serial,
        "fingerprint": grant.fingerprint,
        "valid_after": grant.window_text[0],
        "valid_before": grant.window_text[1],
        "revoked_at": grant.revoked_text,
    }


def escape_text(value: str | None) -> str:
    """audit.show.escape_text, skipped for the usual plain printable ASCII (the hot path)."""
    if value is not None and value.isascii() and value.isprintable() and "\\" not in value:
        return value
    return _escape_text(value)


def _grant_name(grant: Grant | None) -> str:
    if grant is None:
        return "-"
    return escape_text(grant.request_id) if grant.request_id else f"seq {grant.seq}"


def _iso(when: float | None) -> str:
    if when is None:
        return "-"
    moment = datetime.fromtimestamp(when, UTC)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")
