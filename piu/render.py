"""Text and JSON output. Pure: values in, strings out; `piu.cli` prints them.

Server-provided strings (reasons above all) may hold control characters or bidi overrides
that would drive the terminal or make a line read differently than it is; `escape` shows
every non-printable character as a Python-style escape (`\\x1b`, `\\u202e`) and a backslash
as `\\\\`, so what is shown is unambiguous. JSON output escapes everything non-ASCII.
Colour (ANSI SGR) is added only where the caller says so (a terminal, NO_COLOR unset), and
only around text piu has already escaped, so a server string can never end or start one.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from piu.access import Outcome
    from piu.models import AccessRequest, Identity, Page


def escape(text: str) -> str:
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape_char(c) for c in text)


def _escape_char(c: str) -> str:
    if c == "\\":
        return "\\\\"
    if c.isprintable():
        return c
    n = ord(c)
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def to_json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=True)


def _show(value: object) -> str:
    return "-" if value is None else escape(str(value))


def grant_text(outcome: Outcome) -> str:
    g = outcome.grant
    lines = [
        f"Granted {_show(g.id)}: {_show(g.login)}@{_show(g.hostname)} ({_show(g.mode)})"
        + (f" via {_show(g.bastion)}" if g.bastion else "")
        + f", valid until {_show(g.valid_before)}",
    ]
    if outcome.certificate_file is not None:
        lines.append(f"Certificate: {_show(outcome.certificate_file)} (serial {_show(g.serial)})")
    if outcome.bastion_certificate_file is not None:
        lines.append(
            f"Bastion certificate: {_show(outcome.bastion_certificate_file)}"
            f" (serial {_show(g.bastion_serial)})"
        )
    lines += ["Connect with:", "  " + escape(shlex.join(outcome.ssh_argv))]
    return "\n".join(lines)


_TSV_FIELDS = (
    "id",
    "status",
    "username",
    "login",
    "hostname",
    "mode",
    "serial",
    "valid_before",
    "created",
    "reason",
)
_COLUMNS = ("ID", "STATUS", "USER", "TARGET", "MODE", "VALID BEFORE", "REASON")
_STATUS_COLUMN = 1
GREEN, RED, YELLOW, DIM, RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[0m"
STATUS_COLOURS = {
    "GRANTED": GREEN,
    "DENIED": RED,
    "FAILED": RED,
    "EXPIRED": DIM,
    "REVOKED": DIM,
    "PUSHING": YELLOW,
    "PENDING_APPROVAL": YELLOW,
    "CANCELLED": DIM,
}


def _row(item: AccessRequest) -> tuple[str, ...]:
    target = f"{_show(item.login)}@{_show(item.hostname)}"
    valid = _show(item.valid_before)
    if item.status == "PENDING_APPROVAL" and item.approval is not None:
        # Nothing is valid yet: show how far the approvals are instead.
        got, needed = len(item.approval.approvals), item.approval.needed
        valid = f"approved {got}/{needed}"
    return (
        _show(item.id),
        _show(item.status),
        _show(item.username),
        target,
        _show(item.mode),
        valid,
        _show(item.reason),
    )


def access_table(page: Page, *, colour: bool = False) -> str:
    if not page.items:
        return "no access requests"
    rows = [_COLUMNS, *(_row(i) for i in page.items)]
    paint = _paint_status if colour else None
    return _table(rows, paint)


def _paint_status(row: int, column: int, cell: str) -> str:
    if row == 0 or column != _STATUS_COLUMN:
        return cell
    code = STATUS_COLOURS.get(cell.strip())
    return f"{code}{cell}{RESET}" if code else cell


def access_tsv(page: Page) -> str:
    # Escaping turns tab and newline into \x09 and \x0a, so every row stays one line.
    rows = ["\t".join(_TSV_FIELDS)]
    for item in page.items:
        cells = [item.raw.get(name) for name in _TSV_FIELDS]
        rows.append("\t".join("" if c is None else escape(str(c)) for c in cells))
    return "\n".join(rows)


def identity_text(ident: Identity) -> str:
    lines = [
        f"username: {escape(ident.username)}",
        f"issuer:   {_show(ident.issuer)}",
        f"groups:   {_list(ident.groups)}",
        f"roles:    {_list(ident.roles)}",
    ]
    if not ident.allowed:
        return "\n".join([*lines, "allowed:  nothing (no policy rule matches you)"])
    lines.append("allowed:")
    for a in ident.allowed:
        limit = "" if a.max_lifetime_minutes is None else f", up to {a.max_lifetime_minutes} min"
        via = f", via {escape(a.bastion)}" if a.bastion else ""
        lines.append(
            f"  {escape(a.rule)}: {_list(a.logins)} on {_list(a.hosts)}"
            f" ({_list(a.modes)}{limit}{via})"
        )
    return "\n".join(lines)


def revoked_text(request_id: str, status: str | None) -> str:
    return f"Revoked {escape(request_id)}" + (f" (status {escape(status)})" if status else "")


def _list(values: Sequence[str]) -> str:
    return ", ".join(escape(v) for v in values) if values else "-"


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell (cells already escaped by the caller)."""
    return _table(rows)


def _table(
    rows: Sequence[Sequence[str]], paint: Callable[[int, int, str], str] | None = None
) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        # Pad first, colour after: escape codes have no width on screen.
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        cells[-1] = cells[-1].rstrip()
        if paint is not None:
            cells = [paint(n, i, cell) for i, cell in enumerate(cells)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
