"""Reading and writing the approvals tables (`approvals`, `approval_states`) on a connection
the caller's transaction owns; this module never begins or commits.

It turns rows into `even.approvals` values (`PendingState`, `EmergencyState`) and decisions
back into rows. The request's status stays in `access_requests` and is changed by the access
request repository; here it is only read (a join), so a decision and the status change are one
unit of work in the caller's transaction. Invariants:
- An approval row is only ever inserted; (request_id, approver) is the primary key, so the
  database itself refuses a second approval by the same person, whatever raced.
- Times are stored as RFC 3339 UTC strings with seconds, which sort like the instants they
  name, so deadline queries compare strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from even.approvals import (
    PENDING_APPROVAL,
    Approval,
    EmergencyState,
    PendingState,
    Reviewed,
    approval_view,
)
from even.clock import rfc3339
from even.store.approval_tables import ApprovalRow, ApprovalStateRow
from even.store.tables import AccessRequestRow

_states = ApprovalStateRow.__table__  # type: ignore[attr-defined]
_approvals = ApprovalRow.__table__  # type: ignore[attr-defined]
_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def open_pending(
    conn: Connection,
    *,
    request_id: str,
    rule: str,
    needed: int,
    approver_groups: Sequence[str],
    expires_at: datetime,
    asked: dict[str, Any] | None = None,
) -> None:
    """A request now waits for `needed` approvals until `expires_at`; `asked` is what the
    grant at the last approval will need (the requester's facts and key)."""
    conn.execute(
        _states.insert().values(
            request_id=request_id,
            rule=rule,
            needed=needed,
            approver_groups=orjson.dumps(list(approver_groups)).decode(),
            pending_expires_at=rfc3339(expires_at),
            emergency=False,
            asked=None if asked is None else orjson.dumps(asked).decode(),
        )
    )


def load_asked(conn: Connection, request_id: str) -> dict[str, Any] | None:
    """What a pending request asked for (open_pending's `asked`), or None."""
    value = conn.execute(
        select(_states.c.asked).where(_states.c.request_id == request_id)
    ).scalar_one_or_none()
    if value is None:
        return None
    asked: dict[str, Any] = orjson.loads(value)
    return asked


def view_extras(conn: Connection, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The approval and review fields of `AccessRequestView` for those of `request_ids` that
    needed approval or were break-glass grants (two queries, however many ids)."""
    if not request_ids:
        return {}
    ids = list(request_ids)
    states = conn.execute(select(_states).where(_states.c.request_id.in_(ids))).all()
    if not states:
        return {}
    given: dict[str, list[Approval]] = {}
    rows = conn.execute(
        select(_approvals)
        .where(_approvals.c.request_id.in_([s.request_id for s in states]))
        .order_by(_approvals.c.time, _approvals.c.approver)
    ).all()
    for r in rows:
        given.setdefault(r.request_id, []).append(
            Approval(r.approver, parse_time(r.time), r.comment)
        )
    extras: dict[str, dict[str, Any]] = {}
    for s in states:
        extra: dict[str, Any] = {"emergency": bool(s.emergency)}
        if s.pending_expires_at is not None:
            extra["approval"] = {
                "needed": s.needed,
                "approvals": [a.view() for a in given.get(s.request_id, [])],
                "approver_groups": orjson.loads(s.approver_groups),
                "expires_at": s.pending_expires_at,
            }
        if s.emergency:
            extra.update(
                review_due=s.review_due,
                reviewed_at=s.reviewed_at,
                reviewed_by=s.reviewed_by,
                verdict=s.verdict,
                review_comment=s.review_comment,
            )
        extras[s.request_id] = extra
    return extras


def open_emergency(conn: Connection, *, request_id: str, rule: str, review_due: datetime) -> None:
    """A break-glass grant, to be reviewed by `review_due`."""
    conn.execute(
        _states.insert().values(
            request_id=request_id,
            rule=rule,
            needed=0,
            approver_groups="[]",
            emergency=True,
            review_due=rfc3339(review_due),
        )
    )


def add_approval(conn: Connection, request_id: str, approval: Approval) -> None:
    conn.execute(
        _approvals.insert().values(
            request_id=request_id,
            approver=approval.username,
            time=rfc3339(approval.time),
            comment=approval.comment,
        )
    )


def approvals_of(conn: Connection, request_id: str) -> tuple[Approval, ...]:
    rows = conn.execute(
        select(_approvals)
        .where(_approvals.c.request_id == request_id)
        .order_by(_approvals.c.time, _approvals.c.approver)
    ).all()
    return tuple(Approval(r.approver, parse_time(r.time), r.comment) for r in rows)


def load_pending(
    conn: Connection, request_id: str, *, needed: int | None = None
) -> PendingState | None:
    """The request's approval state; `needed` overrides the stored count (the service passes
    the current rule's). None when the request never needed approval (or does not exist)."""
    row = conn.execute(
        select(_requests.c.status, _requests.c.username, _states)
        .join(_states, _states.c.request_id == _requests.c.id)
        .where(_requests.c.id == request_id, _states.c.pending_expires_at.is_not(None))
    ).first()
    if row is None:
        return None
    return PendingState(
        request_id=request_id,
        requester=row.username,
        status=row.status,
        needed=row.needed if needed is None else needed,
        expires_at=parse_time(row.pending_expires_at),
        approvals=approvals_of(conn, request_id),
    )


def approval_object(conn: Connection, request_id: str) -> dict[str, Any] | None:
    """The API's `approval` object for a request that needed approval, else None."""
    state = load_pending(conn, request_id)
    if state is None:
        return None
    groups = conn.execute(
        select(_states.c.approver_groups).where(_states.c.request_id == request_id)
    ).scalar_one()
    return approval_view(state, orjson.loads(groups))


def load_emergency(conn: Connection, request_id: str) -> EmergencyState | None:
    row = conn.execute(
        select(_requests.c.username, _states)
        .join(_states, _states.c.request_id == _requests.c.id)
        .where(_requests.c.id == request_id, _states.c.emergency.is_(True))
    ).first()
    if row is None:
        return None
    return EmergencyState(
        request_id=request_id,
        requester=row.username,
        emergency=True,
        review_due=None if row.review_due is None else parse_time(row.review_due),
        reviewed_at=None if row.reviewed_at is None else parse_time(row.reviewed_at),
        overdue_recorded=row.overdue_recorded_at is not None,
    )


def rule_of(conn: Connection, request_id: str) -> str | None:
    """The rule that decided the request when it was made (approvers are looked up by it)."""
    value = conn.execute(
        select(_states.c.rule).where(_states.c.request_id == request_id)
    ).scalar_one_or_none()
    return None if value is None else str(value)


def record_decision(conn: Connection, request_id: str, by: str, comment: str | None) -> None:
    """Who denied or cancelled, and why (the status change is the request repository's)."""
    conn.execute(
        update(_states)
        .where(_states.c.request_id == request_id)
        .values(decided_by=by, decision_comment=comment)
    )


def record_review(conn: Connection, request_id: str, reviewed: Reviewed) -> None:
    conn.execute(
        update(_states)
        .where(_states.c.request_id == request_id, _states.c.reviewed_at.is_(None))
        .values(
            reviewed_at=rfc3339(reviewed.time),
            reviewed_by=reviewed.reviewer,
            verdict=reviewed.verdict,
            review_comment=reviewed.comment,
        )
    )


def record_overdue(conn: Connection, request_id: str, now: datetime) -> bool:
    """Mark the overdue record as written; False if another job run already did."""
    result = conn.execute(
        update(_states)
        .where(_states.c.request_id == request_id, _states.c.overdue_recorded_at.is_(None))
        .values(overdue_recorded_at=rfc3339(now))
    )
    return bool(result.rowcount)


def due_for_expiry(conn: Connection, now: datetime, limit: int = 100) -> list[str]:
    """Pending requests whose deadline has passed, oldest first (the expiry job's work)."""
    rows = conn.execute(
        select(_states.c.request_id)
        .join(_requests, _requests.c.id == _states.c.request_id)
        .where(
            _requests.c.status == PENDING_APPROVAL,
            _states.c.pending_expires_at <= rfc3339(now),
        )
        .order_by(_states.c.pending_expires_at)
        .limit(limit)
    ).all()
    return [r.request_id for r in rows]


def due_for_overdue(conn: Connection, now: datetime, limit: int = 100) -> list[str]:
    """Break-glass grants past their review deadline, unreviewed, not yet marked overdue."""
    rows = conn.execute(
        select(_states.c.request_id)
        .where(
            _states.c.emergency.is_(True),
            _states.c.reviewed_at.is_(None),
            _states.c.overdue_recorded_at.is_(None),
            _states.c.review_due <= rfc3339(now),
        )
        .order_by(_states.c.review_due)
        .limit(limit)
    ).all()
    return [r.request_id for r in rows]


def pending_under(
    conn: Connection,
    rules: Sequence[str],
    *,
    not_requested_by: str,
    now: datetime,
    limit: int = 50,
    offset: int = 0,
) -> list[str]:
    """Ids of requests pending under `rules` (those the caller approves for), not the
    caller's own and not past their deadline; oldest deadline first."""
    if not rules:
        return []
    rows = conn.execute(
        select(_states.c.request_id)
        .join(_requests, _requests.c.id == _states.c.request_id)
        .where(
            and_(
                _requests.c.status == PENDING_APPROVAL,
                _states.c.rule.in_(list(rules)),
                _requests.c.username != not_requested_by,
                _states.c.pending_expires_at > rfc3339(now),
            )
        )
        .order_by(_states.c.pending_expires_at, _states.c.request_id)
        .limit(limit)
        .offset(offset)
    ).all()
    return [r.request_id for r in rows]


def reviews_under(
    conn: Connection,
    rules: Sequence[str] | None,
    *,
    not_requested_by: str,
    overdue_at: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[str]:
    """Ids of unreviewed break-glass grants under `rules` (None: every rule, for admins),
    not the caller's own; with `overdue_at`, only those past their deadline then."""
    if rules is not None and not rules:
        return []
    query = (
        select(_states.c.request_id)
        .join(_requests, _requests.c.id == _states.c.request_id)
        .where(
            _states.c.emergency.is_(True),
            _states.c.reviewed_at.is_(None),
            _requests.c.username != not_requested_by,
        )
    )
    if rules is not None:
        query = query.where(_states.c.rule.in_(list(rules)))
    if overdue_at is not None:
        query = query.where(_states.c.review_due <= rfc3339(overdue_at))
    query = query.order_by(_states.c.review_due, _states.c.request_id).limit(limit).offset(offset)
    return [r.request_id for r in conn.execute(query).all()]
