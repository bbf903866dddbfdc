"""Background use cases of approvals (SPEC §11), one replica per round like even.service.jobs:

- `expire_pending_once`: a request still PENDING_APPROVAL past its `pending_minutes` deadline
  becomes EXPIRED with an `access.expired` record (`details.pending: true`).
- `review_overdue_once`: a break-glass grant unreviewed past `review_within_hours` gets one
  `access.review_overdue` record; `overdue_recorded_at` makes it exactly once, also when two
  replicas or a later round look at it again.

Each round runs in one write transaction that first takes the job's lock (`try_job_lock`) and
re-reads its candidates inside it, so whatever another replica did first is simply not found.
Time comes from the injected clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from audit.chain import AuditEvent
from even.approvals import EXPIRED, PENDING_APPROVAL, decide_expiry, review_overdue
from even.clock import Clock, rfc3339
from even.store import access_requests, approval_store
from even.store.db import read_only, transaction, try_job_lock
from even.store.tables import AccessRequestRow
from even.store.unit_of_work import Transaction

BATCH = 100
_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]


class ApprovalJobs:
    def __init__(self, *, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def run_once(self) -> None:
        self.expire_pending_once()
        self.review_overdue_once()

    def expire_pending_once(self) -> list[str]:
        """Expire pending requests past their deadline; returns their ids."""
        expired = []
        with transaction(self._engine) as conn:
            if not try_job_lock(conn, "approvals-expire"):
                return []
            now = self._clock.now()
            tx = Transaction(conn, defer=False)
            for request_id in approval_store.due_for_expiry(conn, now, limit=BATCH):
                state = approval_store.load_pending(conn, request_id)
                if state is None or decide_expiry(state, now) is None:
                    continue
                row = access_requests.find(conn, request_id)
                assert row is not None
                _append(tx, "access.expired", row, now, {
                    "pending": True,
                    "mode": row["mode"],
                    "rule": row["rule"],
                    "approvals": len(state.approvals),
                    "needed": state.needed,
                    "expires_at": rfc3339(state.expires_at),
                })  # fmt: skip
                access_requests.set_status(
                    tx,
                    request_id,
                    status=EXPIRED,
                    status_reason="approval_expired",
                    last_modified=rfc3339(now),
                    last_modified_by="even",
                )
                expired.append(request_id)
        return expired

    def review_overdue_once(self) -> list[str]:
        """Record `access.review_overdue` once per overdue break-glass grant; returns ids."""
        marked = []
        with transaction(self._engine) as conn:
            if not try_job_lock(conn, "approvals-overdue"):
                return []
            now = self._clock.now()
            tx = Transaction(conn, defer=False)
            for request_id in approval_store.due_for_overdue(conn, now, limit=BATCH):
                state = approval_store.load_emergency(conn, request_id)
                if state is None or not review_overdue(state, now):
                    continue
                if not approval_store.record_overdue(conn, request_id, now):
                    continue
                row = access_requests.find(conn, request_id)
                assert row is not None
                _append(tx, "access.review_overdue", row, now, {
                    "emergency": True,
                    "rule": row["rule"],
                    "mode": row["mode"],
                    "review_due": None if state.review_due is None else rfc3339(state.review_due),
                })  # fmt: skip
                marked.append(request_id)
        return marked

    def pending_count(self) -> int:
        """Requests waiting for approvers now (the pending-approvals gauge)."""
        with read_only(self._engine) as conn:
            return _count_pending(conn)


def _count_pending(conn: Connection) -> int:
    query = select(func.count()).where(_requests.c.status == PENDING_APPROVAL)
    return int(conn.execute(query).scalar_one())


def _append(
    tx: Transaction, record_type: str, row: Any, now: datetime, details: dict[str, Any]
) -> None:
    tx.append(
        AuditEvent(
            type=record_type,
            username=row["username"],
            login=row["login"],
            hostname=row["hostname"],
            request_id=row["id"],
            reason=row["reason"],
            details=details,
        ),
        now,
    )
