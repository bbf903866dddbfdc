"""Storage of the user-CA keys' states (next, active, retired) — SPEC §6."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from even.store.tables import CaKeyRow, CertificateSerialRow

_ca = CaKeyRow.__table__  # type: ignore[attr-defined]
_serials = CertificateSerialRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CaKeyState:
    fingerprint: str
    public_line: str
    key_file: str
    state: str
    created: str
    activated: str | None
    retired: str | None
    last_valid_before: str | None


# Built once: every group commit reads the CA's state under the write lock.
_ALL = select(_ca).order_by(_ca.c.created, _ca.c.fingerprint)


def all_keys(conn: Connection) -> list[CaKeyState]:
    rows = conn.execute(_ALL).all()
    return [CaKeyState(**{str(k): v for k, v in row._mapping.items()}) for row in rows]


def insert(conn: Connection, key: CaKeyState) -> None:
    conn.execute(_ca.insert().values(**key.__dict__))


def set_state(conn: Connection, fingerprint: str, state: str, **times: str | None) -> None:
    conn.execute(update(_ca).where(_ca.c.fingerprint == fingerprint).values(state=state, **times))


def last_valid_before(conn: Connection, fingerprint: str) -> str | None:
    """The latest expiry of any certificate this key signed (RFC 3339 strings sort by time)."""
    value = conn.execute(
        select(func.max(_serials.c.valid_before)).where(_serials.c.ca_fingerprint == fingerprint)
    ).scalar_one_or_none()
    return None if value is None else str(value)
