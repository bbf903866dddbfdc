"""Readable views of an exported log: who had access to what, when, and why.

Reasons and names are shown with control and bidi characters escaped, so a record cannot
rewrite the auditor's terminal or reorder what they read.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Iterator
from typing import IO, Any


def escape_text(value: str | None) -> str:
    """Escape C0/C1 controls, DEL and format characters (bidi overrides, zero-width)."""
    if value is None:
        return "-"
    out = []
    for ch in value:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0 or unicodedata.category(ch) in ("Cf", "Zl", "Zp"):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)


def read_jsonl(handle: IO[str]) -> Iterator[dict[str, Any]]:
    """Records of a JSONL export (split on \\n only; checkpoint lines are skipped)."""
    for line in _lines(handle):
        if not line.strip():
            continue
        item = json.loads(line)
        if isinstance(item, dict) and item.get("type") != "checkpoint":
            yield item


def _lines(handle: IO[str]) -> Iterator[str]:
    # Iterating a text file splits on \n only (with newline=""), never on U+2028 and friends.
    yield from handle


def table(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    header = ("SEQ", "TIME", "TYPE", "USER", "LOGIN@HOST", "SERIAL", "REASON")
    yield "  ".join(header)
    for record in records:
        details = record.get("details") or {}
        login, host = record.get("login"), record.get("hostname")
        target = f"{escape_text(login)}@{escape_text(host)}" if host else "-"
        serial = details.get("serial") if isinstance(details, dict) else None
        yield "  ".join(
            [
                str(record.get("seq")),
                escape_text(str(record.get("time"))),
                escape_text(str(record.get("type"))),
                escape_text(record.get("username")),
                target,
                "-" if serial is None else str(serial),
                escape_text(record.get("reason")),
            ]
        )
