"""The notification outbox: its table and the only SQL that touches it.

Invariants:
- A row is written inside the transaction that appends the audit record it reports (by the
  record hook, even.store.outbox_hook, through that transaction's unit of work; or
  `insert_entries`): both commit or neither does.
- `status` moves `pending → delivered | failed` and never back; every outcome update is guarded
  by `status = 'pending'`, so a late or repeated outcome changes nothing.
- `claim_due` takes rows whose `next_attempt_at` has come and pushes it to a lease deadline in
  the same transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`), counting the attempt. Another
  deliverer (replica, thread) cannot claim them again before the lease runs out, which is
  longer than a whole batch's deliveries can take; a deliverer that dies mid-batch leaves them
  to be retried after the lease, with the same `webhook_id`.
- Times are RFC 3339 UTC strings of one fixed width, so they compare as strings.
- `body` is the exact bytes that are signed and sent; `last_error` never holds a URL, header or
  response body (URLs may carry credentials; bodies are the receiver's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from even.notify.outbox import OutboxEntry

STATUSES = ("pending", "delivered", "failed")
Position = BigInteger().with_variant(Integer(), "sqlite")

notification_outbox = Table(
    "notification_outbox",
    SQLModel.metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("webhook_id", String(64), nullable=False, unique=True),
    Column("subscription", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("audit_seq", Position, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", String(32), nullable=False),
    Column("last_error", String(255)),
    Column("created_at", String(32), nullable=False),
    Column("delivered_at", String(32)),
    Index("ix_notification_outbox_due", "status", "next_attempt_at"),
    sqlite_autoincrement=True,
)
_outbox = notification_outbox


def stamp(moment: datetime) -> str:
    """Fixed-width RFC 3339 UTC with microseconds: sorts as a string."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    webhook_id: str
    subscription: str
    event_type: str
    audit_seq: int
    body: bytes
    attempts: int
    created_at: str


INSERT_ENTRY = _outbox.insert()


def entry_rows(entries: Iterable[OutboxEntry], now: datetime) -> list[dict[str, Any]]:
    """The rows that store `entries`: pending, due at once."""
    at = stamp(now)
    return [
        {
            "webhook_id": e.webhook_id,
            "subscription": e.subscription,
            "event_type": e.event_type,
            "audit_seq": e.audit_seq,
            "body": e.body,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": at,
            "created_at": at,
        }
        for e in entries
    ]


def insert_entries(conn: Connection, entries: Iterable[OutboxEntry], now: datetime) -> int:
    """Write entries as pending, due at once, in the caller's transaction; returns how many."""
    rows = entry_rows(entries, now)
    if rows:
        conn.execute(INSERT_ENTRY, rows)
    return len(rows)


def claim_due(
    conn: Connection, *, now: datetime, lease_until: datetime, limit: int
) -> list[OutboxRow]:
    """Due pending rows, oldest first, leased to the caller until `lease_until`."""
    query = (
        select(_outbox)
        .where(_outbox.c.status == "pending")
        .where(_outbox.c.next_attempt_at <= stamp(now))
        .order_by(_outbox.c.next_attempt_at, _outbox.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).all()
    if not rows:
        return []
    conn.execute(
        update(_outbox)
        .where(_outbox.c.id.in_([r.id for r in rows]))
        .values(next_attempt_at=stamp(lease_until), attempts=_outbox.c.attempts + 1)
    )
    return [
        OutboxRow(
            id=int(r.id),
            webhook_id=r.webhook_id,
            subscription=r.subscription,
            event_type=r.event_type,
            audit_seq=int(r.audit_seq),
            body=bytes(r.body),
            attempts=int(r.attempts) + 1,
            created_at=r.created_at,
        )
        for r in rows
    ]


def _pending(row_id: int) -> Any:
    return update(_outbox).where(_outbox.c.id == row_id).where(_outbox.c.status == "pending")


def mark_delivered(conn: Connection, row_id: int, now: datetime) -> None:
    conn.execute(
        _pending(row_id).values(status="delivered", delivered_at=stamp(now), last_error=None)
    )


def mark_retry(conn: Connection, row_id: int, next_attempt: datetime, error: str) -> None:
    conn.execute(
        _pending(row_id).values(next_attempt_at=stamp(next_attempt), last_error=error[:255])
    )


def mark_failed(conn: Connection, row_id: int, error: str) -> None:
    conn.execute(_pending(row_id).values(status="failed", last_error=error[:255]))


def any_due(conn: Connection, now: datetime) -> bool:
    """Whether a pending row is due (a cheap read, so an idle deliverer takes no write lock)."""
    query = (
        select(_outbox.c.id)
        .where(_outbox.c.status == "pending")
        .where(_outbox.c.next_attempt_at <= stamp(now))
        .limit(1)
    )
    return conn.execute(query).first() is not None


def outbox_counts(
    conn: Connection, statuses: tuple[str, ...] = ("pending", "failed")
) -> dict[str, int]:
    """Rows per status, each asked-for status present (0 when none): for the metrics endpoint.

    By default the two that matter for alerting; `delivered` grows with the history, so it is
    counted only when asked for.
    """
    counts = dict.fromkeys(statuses, 0)
    rows = conn.execute(
        select(_outbox.c.status, func.count())
        .where(_outbox.c.status.in_(statuses))
        .group_by(_outbox.c.status)
    ).all()
    for status, count in rows:
        counts[str(status)] = int(count)
    return counts


_LISTED = (
    "webhook_id",
    "subscription",
    "event_type",
    "audit_seq",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
    "delivered_at",
)


def list_deliveries(
    conn: Connection,
    *,
    status: str | None = None,
    event_type: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first, without bodies; returns (items, next offset or None)."""
    query = select(*(_outbox.c[name] for name in _LISTED))
    if status is not None:
        query = query.where(_outbox.c.status == status)
    if event_type is not None:
        query = query.where(_outbox.c.event_type == event_type)
    query = query.order_by(_outbox.c.id.desc()).limit(limit + 1).offset(offset)
    rows = conn.execute(query).all()
    items = [{name: row._mapping[name] for name in _LISTED} for row in rows[:limit]]
    for item in items:
        if item["status"] != "pending":
            item["next_attempt_at"] = None
    return items, (offset + limit) if len(rows) > limit else None
