"""Audit storage: append chained records inside the caller's transaction; never update or delete.

Only this module talks SQL for the audit log. `append` neither begins nor commits: the use case
owns the transaction (SQLite `BEGIN IMMEDIATE`; PostgreSQL an advisory lock taken first, one
writer order across replicas), which also serialises appends, so reading the
head and inserting the next record cannot interleave. A link trigger makes a fork, a gap or a
wrong link fail loudly even if a backend's locking were wrong: a record's `prev_hash` must be
the `hash` of record `seq - 1` (genesis for seq 1), read from the page the append touches
anyway (an index on `prev_hash` would write a random page per record). `hash` needs no index
of its own: it covers `seq`, the primary key, so equal hashes would take a SHA-256 collision,
and nothing looks a record up by its hash. Triggers refuse UPDATE and DELETE (PostgreSQL: and
TRUNCATE) on records and checkpoints alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, and_, select
from sqlalchemy.engine import Connection

from audit.chain import GENESIS_HASH, AuditEvent, SealTemplate, seal

metadata = MetaData()
# 64-bit positions on PostgreSQL; SQLite's INTEGER is 64-bit already.
Position = BigInteger().with_variant(Integer(), "sqlite")

audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", Position, primary_key=True, autoincrement=False),
    Column("time", String(32), nullable=False),
    Column("type", String(64), nullable=False),
    Column("username", String(64)),
    Column("login", String(64)),
    Column("hostname", String(253)),
    Column("request_id", String(64), index=True),
    Column("reason", Text),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),  # linked by a trigger (LINK_TRIGGERS)
    Column("hash", String(64), nullable=False),
)

# Signed checkpoints over record `size`, kept so that every export can interleave them.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("size", Position, primary_key=True, autoincrement=False),
    Column("origin", Text, nullable=False),
    Column("head", String(64), nullable=False),
    Column("time", String(32), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
)

APPEND_ONLY_TABLES = ("audit_records", "audit_checkpoints")
# Built once so SQLAlchemy reuses the compiled statement on the hot path.
INSERT_RECORD = audit_records.insert()


def _sqlite_trigger(table: str, action: str) -> str:
    return (
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action} BEFORE {action.upper()} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} are append-only'); END"
    )


SQLITE_APPEND_ONLY_TRIGGERS = (
    *(
        _sqlite_trigger(table, action)
        for table in APPEND_ONLY_TABLES
        for action in ("update", "delete")
    ),
    # Each record links to the one before it (genesis: 64 zeros), as in even's migration 0009.
    "CREATE TRIGGER IF NOT EXISTS audit_records_link BEFORE INSERT ON audit_records "
    "WHEN NEW.seq < 1 OR NEW.prev_hash IS NOT (CASE WHEN NEW.seq = 1 THEN printf('%064d', 0) "
    "ELSE (SELECT hash FROM audit_records WHERE seq = NEW.seq - 1) END) "
    "BEGIN SELECT RAISE(ABORT, 'audit_records: a record must link to the record before it'); END",
)


# PostgreSQL: row triggers refuse UPDATE/DELETE, a statement trigger TRUNCATE (which fires no
# row triggers); ENABLE ALWAYS so they fire even under session_replication_role = replica.
# The app role also lacks those privileges; the triggers stop the owner role too. The same
# DDL is frozen in even's baseline migration (the schema's real source); this copy serves
# callers that build the tables from `metadata` directly (tests, benchmarks).
POSTGRES_GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION even_refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% are append-only (% refused)', TG_TABLE_NAME, TG_OP;
END
$$"""


def _postgres_triggers(table: str) -> tuple[str, ...]:
    statements: list[str] = []
    for action, level in (("update", "ROW"), ("delete", "ROW"), ("truncate", "STATEMENT")):
        name = f"{table}_no_{action}"
        statements += [
            f"DROP TRIGGER IF EXISTS {name} ON {table}",
            f"CREATE TRIGGER {name} BEFORE {action.upper()} ON {table} "
            f"FOR EACH {level} EXECUTE FUNCTION even_refuse_audit_change()",
            f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}",
        ]
    return tuple(statements)


POSTGRES_LINK_FUNCTION = """
CREATE OR REPLACE FUNCTION even_audit_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq < 1 OR NEW.prev_hash IS DISTINCT FROM (CASE WHEN NEW.seq = 1 THEN repeat('0', 64)
            ELSE (SELECT hash FROM audit_records WHERE seq = NEW.seq - 1) END) THEN
        RAISE EXCEPTION '%: record % does not link to the record before it', TG_TABLE_NAME,
            NEW.seq USING ERRCODE = 'unique_violation', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END
$$"""

POSTGRES_APPEND_ONLY_TRIGGERS = (
    POSTGRES_GUARD_FUNCTION,
    *(statement for table in APPEND_ONLY_TABLES for statement in _postgres_triggers(table)),
    POSTGRES_LINK_FUNCTION,
    "DROP TRIGGER IF EXISTS audit_records_link ON audit_records",
    "CREATE TRIGGER audit_records_link BEFORE INSERT ON audit_records "
    "FOR EACH ROW EXECUTE FUNCTION even_audit_link()",
    "ALTER TABLE audit_records ENABLE ALWAYS TRIGGER audit_records_link",
)


def install_append_only_guards(conn: Connection) -> None:
    """Create the storage-level refusal of UPDATE/DELETE/TRUNCATE and the records' link
    trigger (part of the schema; even's migrations hold the same DDL)."""
    if conn.dialect.name == "sqlite":
        for statement in SQLITE_APPEND_ONLY_TRIGGERS:
            conn.exec_driver_sql(statement)
    elif conn.dialect.name == "postgresql":
        for statement in POSTGRES_APPEND_ONLY_TRIGGERS:
            conn.exec_driver_sql(statement)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with Z and microseconds, so records sort and read the same everywhere."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Built once: every group commit reads the head under the write lock, and building the
# statement cost more than running it.
_HEAD = (
    select(audit_records.c.seq, audit_records.c.hash).order_by(audit_records.c.seq.desc()).limit(1)
)


def head(conn: Connection) -> tuple[int, str]:
    """(seq, hash) of the last record, or (0, genesis) for an empty log."""
    row = conn.execute(_HEAD).first()
    if row is None:
        return 0, GENESIS_HASH
    return int(row.seq), str(row.hash)


def sealed_row(
    event: AuditEvent | SealTemplate, now: datetime, *, seq: int, prev_hash: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The record at position `seq` after `prev_hash`, and the row that stores it (pure).

    For callers that know the head already (a unit of work that appended the previous
    record itself) and insert the row in their own way; `append` is the plain path. An event
    given as a SealTemplate was canonicalised ahead, outside the caller's lock.
    """
    time = format_time(now)
    row: dict[str, Any]
    if isinstance(event, SealTemplate):
        record = event.seal(seq=seq, time=time, prev_hash=prev_hash)
        row = {**record, "details": event.details_json}
    else:
        record = seal(event, seq=seq, time=time, prev_hash=prev_hash)
        row = dict(record)
        row["details"] = orjson.dumps(record["details"], option=orjson.OPT_SORT_KEYS).decode()
    return record, row


def append(conn: Connection, event: AuditEvent | SealTemplate, now: datetime) -> dict[str, Any]:
    """Append one record after the current head, in the caller's transaction."""
    last_seq, last_hash = head(conn)
    record, row = sealed_row(event, now, seq=last_seq + 1, prev_hash=last_hash)
    conn.execute(INSERT_RECORD, row)
    return record


def _row_to_record(row: Any) -> dict[str, Any]:
    # SQLAlchemy's column keys may be str subclasses; orjson wants plain str keys.
    record = {str(key): value for key, value in row._mapping.items()}
    record["details"] = orjson.loads(record["details"])
    return record


def iter_records(
    conn: Connection, *, after_seq: int = 0, until_seq: int | None = None, batch: int = 1000
) -> Iterator[dict[str, Any]]:
    """Records in seq order (after `after_seq`, up to `until_seq`), in batches: constant memory."""
    while True:
        query = select(audit_records).where(audit_records.c.seq > after_seq)
        if until_seq is not None:
            query = query.where(audit_records.c.seq <= until_seq)
        rows = conn.execute(query.order_by(audit_records.c.seq).limit(batch)).all()
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


def query_records(
    conn: Connection,
    *,
    since: str | None = None,
    until: str | None = None,
    username: str | None = None,
    login: str | None = None,
    hostname: str | None = None,
    record_type: str | None = None,
    after_seq: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Records matching every given filter, in seq order, after `after_seq`."""
    table = audit_records
    conditions = [table.c.seq > after_seq]
    if since is not None:
        conditions.append(table.c.time >= since)
    if until is not None:
        conditions.append(table.c.time < until)
    equal = (
        ("username", username),
        ("login", login),
        ("hostname", hostname),
        ("type", record_type),
    )
    conditions += [table.c[column] == value for column, value in equal if value is not None]
    rows = conn.execute(
        select(table).where(and_(*conditions)).order_by(table.c.seq).limit(limit)
    ).all()
    return [_row_to_record(row) for row in rows]


# -- checkpoints ----------------------------------------------------------------------------


def latest_checkpoint(conn: Connection) -> dict[str, Any] | None:
    row = conn.execute(
        select(audit_checkpoints).order_by(audit_checkpoints.c.size.desc()).limit(1)
    ).first()
    return None if row is None else _checkpoint_line(row)


def add_checkpoint(conn: Connection, line: dict[str, Any]) -> None:
    """Store a signed checkpoint line (`{"type": "checkpoint", origin, size, head, …}`)."""
    conn.execute(
        audit_checkpoints.insert().values(
            size=line["size"],
            origin=line["origin"],
            head=line["head"],
            time=line["time"],
            key_id=line["key_id"],
            signature=line["signature"],
        )
    )


def iter_checkpoints(conn: Connection, *, up_to: int) -> Iterator[dict[str, Any]]:
    rows = conn.execute(
        select(audit_checkpoints)
        .where(audit_checkpoints.c.size <= up_to)
        .order_by(audit_checkpoints.c.size)
    ).all()
    for row in rows:
        yield _checkpoint_line(row)


def _checkpoint_line(row: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"type": "checkpoint"}
    line.update({str(key): value for key, value in row._mapping.items()})
    return line


def iter_export(conn: Connection, *, up_to: int) -> Iterator[dict[str, Any]]:
    """Records 1..up_to in seq order, each checkpoint right after record `size` (SPEC §8)."""
    checkpoints = iter_checkpoints(conn, up_to=up_to)
    pending = next(checkpoints, None)
    for record in iter_records(conn, until_seq=up_to):
        yield record
        while pending is not None and pending["size"] == record["seq"]:
            yield pending
            pending = next(checkpoints, None)
