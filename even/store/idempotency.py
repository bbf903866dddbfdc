"""Storage of `Idempotency-Key`s (SPEC §7): claim a key, finish it with the answer, read it.

Scoped to (requester, key) for 24 hours. Claims and answers are plain rows; callers decide
what a clash means.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from even.clock import rfc3339
from even.store.tables import IdempotencyKeyRow

KEY_LIFETIME = timedelta(hours=24)
# Longer than any grant transaction can take: an older in-flight claim never committed.
ABANDONED_AFTER = timedelta(seconds=60)

_keys = IdempotencyKeyRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StoredKey:
    body_sha256: str
    state: str
    answer: dict[str, Any] | None
    created: datetime


def find(conn: Connection, username: str, key: str) -> StoredKey | None:
    row = conn.execute(
        select(_keys).where(_keys.c.username == username, _keys.c.key == key)
    ).first()
    if row is None:
        return None
    return StoredKey(
        body_sha256=row.body_sha256,
        state=row.state,
        answer=None if row.answer is None else orjson.loads(row.answer),
        created=datetime.strptime(row.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
    )


def claim(conn: Connection, username: str, key: str, body_sha256: str, now: datetime) -> None:
    """Take the key for a new request (replacing an expired or abandoned claim)."""
    conn.execute(delete(_keys).where(_keys.c.username == username, _keys.c.key == key))
    conn.execute(
        _keys.insert().values(
            username=username,
            key=key,
            body_sha256=body_sha256,
            state="in_flight",
            answer=None,
            created=rfc3339(now),
        )
    )


def finish(conn: Connection, username: str, key: str, answer: dict[str, Any]) -> None:
    conn.execute(
        update(_keys)
        .where(_keys.c.username == username, _keys.c.key == key)
        .values(state="done", answer=orjson.dumps(answer).decode())
    )


def release(conn: Connection, username: str, key: str) -> None:
    """Drop an in-flight claim whose request failed before committing anything."""
    conn.execute(
        delete(_keys).where(
            _keys.c.username == username, _keys.c.key == key, _keys.c.state == "in_flight"
        )
    )
