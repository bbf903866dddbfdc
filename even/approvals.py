"""Approvals and break-glass reviews as a pure state machine (SPEC §11): no SQL, no FastAPI.

A request whose deciding rule has `approval:` waits in `PENDING_APPROVAL` and leaves it exactly
once, for `GRANTED`, `DENIED`, `CANCELLED` or `EXPIRED`. The service loads the request's state,
asks one `decide_*` function what a call means, and commits the answer (audit record and row
change) as one unit of work; this module only decides.

Invariants:
- Errors come in the contract's order: the requester (403 `self_approval`), not an approver
  (403 `not_an_approver`), not pending (409 `not_pending`), the same approver twice
  (409 `already_approved`). So a stranger learns nothing about the request's state.
- The requester never approves, denies or reviews their own request; each approver counts once.
- A request past its pending deadline is not pending, even before the expiry job has marked it
  (time comes from the caller's injected clock, never from here).
- `grant_now` is true exactly when this approval reaches the count; two racing approvals are
  serialised by the writer, and the second then sees `GRANTED` and gets `not_pending`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from even.clock import rfc3339
from even.errors import (
    AlreadyApproved,
    AlreadyReviewed,
    InvalidRequest,
    NotAnApprover,
    NotPending,
    NotRequester,
    NotReviewable,
    SelfApproval,
)
from even.policy_approval import ApprovalRule, ApproverCheck, EmergencyRule

PENDING_APPROVAL = "PENDING_APPROVAL"
GRANTED = "GRANTED"
DENIED = "DENIED"
CANCELLED = "CANCELLED"
EXPIRED = "EXPIRED"
# The only ways out of PENDING_APPROVAL; nothing ever comes back into it.
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING_APPROVAL: frozenset({GRANTED, DENIED, CANCELLED, EXPIRED}),
}
Verdict = Literal["justified", "unjustified"]
VERDICTS: tuple[Verdict, ...] = ("justified", "unjustified")


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


@dataclass(frozen=True)
class Approval:
    username: str
    time: datetime
    comment: str | None = None

    def view(self) -> dict[str, Any]:
        return {"username": self.username, "time": rfc3339(self.time), "comment": self.comment}


@dataclass(frozen=True)
class Actor:
    """The authenticated caller: username, groups from the token, and whether an admin."""

    username: str
    groups: tuple[str, ...] = ()
    is_admin: bool = False


@dataclass(frozen=True)
class PendingState:
    """What a decision needs to know of a request waiting for approval.

    `needed` is the count the deciding rule asks for as the policy is now (the service passes
    the current rule's), `expires_at` the pending deadline set when the request was made.
    """

    request_id: str
    requester: str
    status: str
    needed: int
    expires_at: datetime
    approvals: tuple[Approval, ...] = ()

    def is_pending(self, now: datetime) -> bool:
        return self.status == PENDING_APPROVAL and now < self.expires_at

    def approvers(self) -> tuple[str, ...]:
        return tuple(a.username for a in self.approvals)


@dataclass(frozen=True)
class EmergencyState:
    """A break-glass grant's review state (`emergency` false: an ordinary request)."""

    request_id: str
    requester: str
    emergency: bool
    review_due: datetime | None
    reviewed_at: datetime | None = None
    overdue_recorded: bool = False


@dataclass(frozen=True)
class Approved:
    """`access.approved`; at the count also the grant (`access.granted` with `approvers`)."""

    approval: Approval
    count: int
    needed: int
    approvers: tuple[str, ...]  # everyone who approved so far, this one last

    @property
    def grant_now(self) -> bool:
        return self.count >= self.needed

    @property
    def status(self) -> str:
        return GRANTED if self.grant_now else PENDING_APPROVAL


@dataclass(frozen=True)
class Rejected:
    """`access.denied` with `details.denied_by`; the request becomes DENIED."""

    denied_by: str
    time: datetime
    comment: str
    status: str = DENIED


@dataclass(frozen=True)
class Cancelled:
    by: str
    time: datetime
    status: str = CANCELLED


@dataclass(frozen=True)
class Expired:
    time: datetime
    status: str = EXPIRED


@dataclass(frozen=True)
class Reviewed:
    """`access.reviewed`; `late` when it came after the review deadline."""

    reviewer: str
    verdict: Verdict
    comment: str
    time: datetime
    late: bool


def pending_expires_at(now: datetime, approval: ApprovalRule) -> datetime:
    return now + timedelta(minutes=approval.pending_minutes)


def review_due_at(granted_at: datetime, emergency: EmergencyRule) -> datetime:
    return granted_at + timedelta(hours=emergency.review_within_hours)


def _approver_or_deny(state: PendingState, actor: Actor, approvers: ApproverCheck | None) -> None:
    if actor.username == state.requester:
        raise SelfApproval("you cannot approve or deny your own request")
    # None: the rule is gone from the policy (or needs no approval any more): nobody may.
    if approvers is None or not approvers.is_listed(actor.username, actor.groups):
        raise NotAnApprover("you are not an approver for this request")


def _pending_or_conflict(state: PendingState, now: datetime) -> None:
    if not state.is_pending(now):
        status = EXPIRED if state.status == PENDING_APPROVAL else state.status
        raise NotPending(f"the request is no longer pending (it is {status})")


def decide_approve(
    state: PendingState,
    actor: Actor,
    approvers: ApproverCheck | None,
    now: datetime,
    comment: str | None = None,
) -> Approved:
    _approver_or_deny(state, actor, approvers)
    _pending_or_conflict(state, now)
    if actor.username in state.approvers():
        raise AlreadyApproved("you have already approved this request")
    approval = Approval(actor.username, now, _optional_comment(comment))
    approved = (*state.approvers(), actor.username)
    return Approved(approval, len(approved), state.needed, approved)


def decide_deny(
    state: PendingState,
    actor: Actor,
    approvers: ApproverCheck | None,
    now: datetime,
    comment: str,
) -> Rejected:
    _approver_or_deny(state, actor, approvers)
    _pending_or_conflict(state, now)
    return Rejected(actor.username, now, _required_comment(comment, "deny"))


def decide_cancel(state: PendingState, actor: Actor, now: datetime) -> Cancelled:
    if actor.username != state.requester:
        raise NotRequester("only the requester may cancel a pending request")
    _pending_or_conflict(state, now)
    return Cancelled(actor.username, now)


def decide_expiry(state: PendingState, now: datetime) -> Expired | None:
    """The expiry job's question: has this pending request run out of time?"""
    if state.status == PENDING_APPROVAL and now >= state.expires_at:
        return Expired(now)
    return None


def decide_review(
    state: EmergencyState,
    actor: Actor,
    approvers: ApproverCheck | None,
    now: datetime,
    verdict: str,
    comment: str,
) -> Reviewed:
    """A break-glass review: an approver of the rule or an admin, never the requester."""
    if actor.username == state.requester:
        raise SelfApproval("you cannot review your own break-glass access")
    listed = approvers is not None and approvers.is_listed(actor.username, actor.groups)
    if not (listed or actor.is_admin):
        raise NotAnApprover("only an approver of this rule or an admin may review")
    if not state.emergency:
        raise NotReviewable("only break-glass access is reviewed")
    if state.reviewed_at is not None:
        raise AlreadyReviewed("this break-glass access has already been reviewed")
    if verdict not in VERDICTS:
        raise InvalidRequest("verdict must be justified or unjustified")
    late = state.review_due is not None and now > state.review_due
    checked: Verdict = "justified" if verdict == "justified" else "unjustified"
    return Reviewed(actor.username, checked, _required_comment(comment, "review"), now, late)


def review_overdue(state: EmergencyState, now: datetime) -> bool:
    """The overdue job's question: record `access.review_overdue` for this grant now?

    Exactly once per grant: never again after `overdue_recorded`, never once reviewed.
    """
    return (
        state.emergency
        and state.reviewed_at is None
        and not state.overdue_recorded
        and state.review_due is not None
        and now >= state.review_due
    )


def approval_view(state: PendingState, approver_groups: list[str]) -> dict[str, Any]:
    """The API's `approval` object: `{needed, approvals, approver_groups, expires_at}`."""
    return {
        "needed": state.needed,
        "approvals": [a.view() for a in state.approvals],
        "approver_groups": list(approver_groups),
        "expires_at": rfc3339(state.expires_at),
    }


def _optional_comment(comment: str | None) -> str | None:
    return comment if comment is not None and comment.strip() else None


def _required_comment(comment: str, verb: str) -> str:
    if not comment or not comment.strip():
        raise InvalidRequest(f"a comment is required to {verb}")
    return comment
