"""Background use cases: expire grants, reconcile pushes that never got an outcome (SPEC §5).

- `expire_once`: every GRANTED request past its `valid_before` becomes EXPIRED with an
  `access.expired` record; then, for push grants, the lines are removed from the hosts.
  (sshd already refuses them on its own from their expiry-time; this is tidiness and the
  record, so removal failures are only logged and odd prunes them at its next write.)
- `reconcile_once`: a PUSHING request older than the push timeout has a `push_started`
  record and no outcome — its process died, or could not commit. Its lines are revoked on
  every host of the recorded plan, then `access.failed` with `error: reconciled` closes it.
  A host that cannot be cleaned leaves it PUSHING for the next round, until the grant's own
  expiry has passed (sshd refuses the line by then), when it is closed as `cleanup: expired`.
  A FAILED push whose own clean-up was incomplete (`cleanup_incomplete`) is worked the same
  way every round, with no waiting: once every host is clean, `access.failed` with
  `error: cleanup, cleanup: clean` records it (`expired` after the grant's end).

Election: each round starts in a write transaction with `try_job_lock` (PostgreSQL: one
replica per round; SQLite: the single writer). The decisions are taken again inside the
transaction that records them ("still GRANTED and past valid_before", "still PUSHING"), so a
replica or worker that runs the same round later finds nothing left to do. Host work happens
outside any transaction (it may take seconds, and the writer lock is global); revoking twice
is harmless because odd's revoke is idempotent.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from audit.chain import AuditEvent
from even.clock import Clock, rfc3339
from even.service.approval_jobs import ApprovalJobs
from even.service.push_lines import PushLines
from even.store import access_requests
from even.store.db import transaction, try_job_lock
from even.store.tables import AccessRequestRow
from even.store.unit_of_work import append_record

log = logging.getLogger("even.jobs")
_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]

BATCH = 100  # requests per round: a long backlog is worked off over several rounds


class Jobs:
    def __init__(
        self,
        *,
        engine: Engine,
        clock: Clock,
        push: PushLines | None = None,
        approvals: ApprovalJobs | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._push = push
        self.approvals = approvals  # pending expiry and overdue reviews (SPEC §11)

    def run_once(self) -> None:
        """One round of every job (what the app's background loop calls)."""
        self.reconcile_once()
        self.expire_once()
        if self.approvals is not None:
            self.approvals.run_once()

    # -- expiry ---------------------------------------------------------------------------

    def expire_once(self) -> list[str]:
        """Expire what is due; returns the ids expired."""
        with transaction(self._engine) as conn:
            if not try_job_lock(conn, "expire"):
                return []
            now = self._clock.now()
            rows = conn.execute(
                select(_requests)
                .where(_requests.c.status == "GRANTED")
                .where(_requests.c.valid_before <= rfc3339(now))
                .order_by(_requests.c.valid_before)
                .limit(BATCH)
            ).all()
            for row in rows:
                _append(conn, "access.expired", row, now, {
                    "mode": row.mode,
                    "serial": row.serial,
                    "bastion_serial": row.bastion_serial,
                    "key_id": row.key_id,
                    "fingerprint": row.fingerprint,
                    "valid_before": row.valid_before,
                    "bastion": row.bastion,
                })  # fmt: skip
                _set_status(conn, row.id, "EXPIRED", "expired", now)
        expired = [row.id for row in rows]
        for row in rows:
            if row.mode == "push" and self._push is not None:
                unclean = self._push.revoke_lines(row.id)
                if unclean:
                    log.warning("expired %s: lines not removed from %s", row.id, unclean)
        return expired

    # -- reconcile ------------------------------------------------------------------------

    def reconcile_once(self) -> list[str]:
        """Resolve pushes without an outcome, and finish failed pushes' clean-ups; returns
        the ids closed (as FAILED, or their clean-up recorded)."""
        if self._push is None:
            return []
        timeout = timedelta(seconds=self._push.timeout_seconds)
        with transaction(self._engine) as conn:
            if not try_job_lock(conn, "reconcile"):
                return []
            cutoff = rfc3339(self._clock.now() - timeout)
            candidates = conn.execute(
                select(_requests.c.id)
                .where(_requests.c.status == "PUSHING")
                # valid_after is when its push started (for a request that waited for
                # approvers, much later than `created`).
                .where(_requests.c.valid_after <= cutoff)
                .order_by(_requests.c.valid_after)
                .limit(BATCH)
            ).all()
            unfinished = access_requests.unclean_failures(conn, limit=BATCH)
        closed = []
        for (request_id,) in candidates:
            unclean = self._push.revoke_lines(request_id)
            if self._close(request_id, unclean, cutoff):
                closed.append(request_id)
        for request_id in unfinished:
            unclean = self._push.revoke_lines(request_id)
            if self._finish_cleanup(request_id, unclean):
                closed.append(request_id)
        return closed

    def _finish_cleanup(self, request_id: str, unclean: list[str]) -> bool:
        """Record a failed push's clean-up once every host is clean (or the lines expired)."""
        with transaction(self._engine) as conn:
            now = self._clock.now()
            row = conn.execute(select(_requests).where(_requests.c.id == request_id)).first()
            if row is None or not access_requests.needs_cleanup(row):
                return False  # revoked or finished meanwhile
            cleanup = "clean"
            if unclean:
                if not _past(row.valid_before, now):
                    log.warning("cleanup %s: %s not clean yet; retrying later", row.id, unclean)
                    return False
                cleanup = "expired"  # the hosts' sshd refuses the lines by now
            _append(conn, "access.failed", row, now, {
                "mode": row.mode,
                "code": "push_failed",
                "error": "cleanup",
                "cleanup": cleanup,
                "leftover_hosts": unclean,
                "fingerprint": row.fingerprint,
            })  # fmt: skip
            _set_status(conn, row.id, "FAILED", f"push_failed: cleanup {cleanup}", now)
        log.warning("failed push %s: clean-up finished (%s)", row.id, cleanup)
        return True

    def _close(self, request_id: str, unclean: list[str], cutoff: str) -> bool:
        with transaction(self._engine) as conn:
            now = self._clock.now()
            row = conn.execute(select(_requests).where(_requests.c.id == request_id)).first()
            if row is None or row.status != "PUSHING" or row.valid_after > cutoff:
                return False  # resolved meanwhile, by its own request or another replica
            cleanup = "clean"
            if unclean:
                if not _past(row.valid_before, now):
                    log.warning("reconcile %s: %s not clean yet; retrying later", row.id, unclean)
                    return False
                cleanup = "expired"  # the hosts' sshd refuses the lines by now
            _append(conn, "access.failed", row, now, {
                "mode": row.mode,
                "code": "push_failed",
                "error": "reconciled",
                "cleanup": cleanup,
                "leftover_hosts": unclean,
                "fingerprint": row.fingerprint,
            })  # fmt: skip
            _set_status(conn, row.id, "FAILED", "reconciled", now)
        log.warning("reconciled push %s (no outcome was recorded): cleanup %s", row.id, cleanup)
        return True


def _append(
    conn: Connection, record_type: str, row: Any, now: datetime, details: dict[str, Any]
) -> None:
    event = AuditEvent(
        type=record_type,
        username=row.username,
        login=row.login,
        hostname=row.hostname,
        request_id=row.id,
        reason=row.reason,
        details=details,
    )
    append_record(conn, event, now)


def _set_status(conn: Connection, request_id: str, status: str, why: str, now: datetime) -> None:
    conn.execute(
        update(_requests)
        .where(_requests.c.id == request_id)
        .values(
            status=status, status_reason=why, last_modified=rfc3339(now), last_modified_by="even"
        )
    )


def _past(valid_before: str | None, now: datetime) -> bool:
    if valid_before is None:
        return True
    moment = datetime.strptime(valid_before, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return moment <= now
