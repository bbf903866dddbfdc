"""Audit storage: append chained records inside the caller's transaction; never update or delete.

Only this module talks SQL for the audit log. `append` neither begins nor commits: the use case
owns the transaction (SQLite `BEGIN IMMEDIATE`), which also serialises appends, so reading the
head and inserting the next record cannot interleave. `UNIQUE(prev_hash)` makes a fork fail
loudly even if a backend's locking were wrong. Triggers refuse UPDATE and DELETE.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, select
from sqlalchemy.engine import Connection

from audit.chain import GENESIS_HASH, AuditEvent, seal

metadata = MetaData()

audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("time", String(32), nullable=False),
    Column("type", String(64), nullable=False),
    Column("username", String(64)),
    Column("login", String(64)),
    Column("hostname", String(253)),
    Column("request_id", String(64), index=True),
    Column("reason", Text),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("hash", String(64), nullable=False, unique=True),
)

SQLITE_APPEND_ONLY_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
       BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
       BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
)


def install_append_only_guards(conn: Connection) -> None:
    """Create the storage-level refusal of UPDATE/DELETE (part of the schema)."""
    if conn.dialect.name == "sqlite":
        for statement in SQLITE_APPEND_ONLY_TRIGGERS:
            conn.exec_driver_sql(statement)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with Z and microseconds, so records sort and read the same everywhere."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def head(conn: Connection) -> tuple[int, str]:
    """(seq, hash) of the last record, or (0, genesis) for an empty log."""
    row = conn.execute(
        select(audit_records.c.seq, audit_records.c.hash)
        .order_by(audit_records.c.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return 0, GENESIS_HASH
    return int(row.seq), str(row.hash)


def append(conn: Connection, event: AuditEvent, now: datetime) -> dict[str, Any]:
    """Append one record after the current head, in the caller's transaction."""
    last_seq, last_hash = head(conn)
    record = seal(event, seq=last_seq + 1, time=format_time(now), prev_hash=last_hash)
    row = dict(record)
    row["details"] = orjson.dumps(record["details"], option=orjson.OPT_SORT_KEYS).decode()
    conn.execute(audit_records.insert().values(**row))
    return record


def _row_to_record(row: Any) -> dict[str, Any]:
    # SQLAlchemy's column keys may be str subclasses; orjson wants plain str keys.
    record = {str(key): value for key, value in row._mapping.items()}
    record["details"] = orjson.loads(record["details"])
    return record


def iter_records(
    conn: Connection, *, after_seq: int = 0, batch: int = 1000
) -> Iterator[dict[str, Any]]:
    """All records in seq order, fetched in batches (constant memory)."""
    while True:
        rows = conn.execute(
            select(audit_records)
            .where(audit_records.c.seq > after_seq)
            .order_by(audit_records.c.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield _row_to_record(row)
        after_seq = int(rows[-1].seq)


def records_for_request(conn: Connection, request_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(audit_records)
        .where(audit_records.c.request_id == request_id)
        .order_by(audit_records.c.seq)
    ).all()
    return [_row_to_record(r) for r in rows]
