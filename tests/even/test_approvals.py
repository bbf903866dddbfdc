"""The approval state machine and its decisions (even.approvals): pure, with an injected time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from even import approvals as ap
from even.errors import (
    AlreadyApproved,
    AlreadyReviewed,
    EvenError,
    InvalidRequest,
    NotAnApprover,
    NotPending,
    NotRequester,
    NotReviewable,
    SelfApproval,
)
from even.policy_approval import ApprovalRule, ApproverCheck, Approvers, EmergencyRule

T0 = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
RULE = ApprovalRule(approvers=Approvers(groups=["sre-leads"], users=["carol"]), count=1)
CHECK = ApproverCheck.of(RULE)
ALICE = ap.Actor("alice", ("sre", "sre-leads"))  # the requester, even though a lead
BOB = ap.Actor("bob", ("sre",))
CAROL = ap.Actor("carol")
DAVE = ap.Actor("dave", ("sre-leads",))
ADMIN = ap.Actor("erin", ("security",), is_admin=True)


def _pending(needed: int = 1, **changes: object) -> ap.PendingState:
    state = ap.PendingState(
        request_id="r1",
        requester="alice",
        status=ap.PENDING_APPROVAL,
        needed=needed,
        expires_at=ap.pending_expires_at(T0, RULE),
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def test_transitions_only_out_of_pending() -> None:
    for target in (ap.GRANTED, ap.DENIED, ap.CANCELLED, ap.EXPIRED):
        assert ap.can_transition(ap.PENDING_APPROVAL, target)
    assert not ap.can_transition(ap.PENDING_APPROVAL, "REVOKED")
    for current in (ap.GRANTED, ap.DENIED, ap.CANCELLED, ap.EXPIRED):
        assert not ap.can_transition(current, ap.PENDING_APPROVAL)
        assert not ap.can_transition(current, ap.GRANTED)


def test_one_approval_of_one_grants_now() -> None:
    approved = ap.decide_approve(_pending(), CAROL, CHECK, T0 + timedelta(minutes=5), "ok")
    assert approved.grant_now and approved.status == ap.GRANTED
    assert (approved.count, approved.needed, approved.approvers) == (1, 1, ("carol",))
    assert approved.approval == ap.Approval("carol", T0 + timedelta(minutes=5), "ok")


def test_count_two_needs_two_distinct_approvers() -> None:
    state = _pending(needed=2)
    first = ap.decide_approve(state, CAROL, CHECK, T0, None)
    assert not first.grant_now and first.status == ap.PENDING_APPROVAL
    state = replace(state, approvals=(first.approval,))
    with pytest.raises(AlreadyApproved):
        ap.decide_approve(state, CAROL, CHECK, T0)
    second = ap.decide_approve(state, DAVE, CHECK, T0 + timedelta(seconds=1), "")
    assert second.grant_now and second.approvers == ("carol", "dave")
    assert second.approval.comment is None  # a blank comment is no comment


# (actor, state changes, expected error) — the contract's order: requester, approver, pending,
# duplicate. Each row breaks several conditions, so the first in order must win.
ORDER_CASES = [
    (ALICE, {"status": ap.GRANTED}, SelfApproval),
    (ALICE, {}, SelfApproval),
    (BOB, {"status": ap.DENIED}, NotAnApprover),
    (BOB, {}, NotAnApprover),
    (CAROL, {"status": ap.GRANTED, "approvals": (ap.Approval("carol", T0),)}, NotPending),
    (CAROL, {"status": ap.CANCELLED}, NotPending),
    (CAROL, {"expires_at": T0}, NotPending),  # past its deadline before the job ran
    (CAROL, {"approvals": (ap.Approval("carol", T0),)}, AlreadyApproved),
]


@pytest.mark.parametrize(("actor", "changes", "error"), ORDER_CASES)
def test_approve_errors_in_the_contract_order(
    actor: ap.Actor, changes: dict[str, object], error: type[EvenError]
) -> None:
    with pytest.raises(error):
        ap.decide_approve(_pending(needed=2, **changes), actor, CHECK, T0)


def test_error_codes_are_stable() -> None:
    codes = {cls.code for cls in (SelfApproval, NotAnApprover, NotPending, AlreadyApproved)}
    assert codes == {"self_approval", "not_an_approver", "not_pending", "already_approved"}


def test_a_rule_gone_from_the_policy_has_no_approvers() -> None:
    with pytest.raises(NotAnApprover):
        ap.decide_approve(_pending(), CAROL, None, T0)
    with pytest.raises(SelfApproval):  # the requester still hears it is their own
        ap.decide_approve(_pending(), ALICE, None, T0)


def test_deny_needs_a_comment_and_follows_the_same_order() -> None:
    rejected = ap.decide_deny(_pending(), DAVE, CHECK, T0, "not during the freeze")
    assert (rejected.denied_by, rejected.status, rejected.comment) == (
        "dave",
        ap.DENIED,
        "not during the freeze",
    )
    with pytest.raises(InvalidRequest):
        ap.decide_deny(_pending(), DAVE, CHECK, T0, "  ")
    with pytest.raises(SelfApproval):
        ap.decide_deny(_pending(), ALICE, CHECK, T0, "no")
    with pytest.raises(NotAnApprover):
        ap.decide_deny(_pending(), BOB, CHECK, T0, "no")
    with pytest.raises(NotPending):
        ap.decide_deny(_pending(status=ap.EXPIRED), DAVE, CHECK, T0, "no")
    # An approver who approved may still deny a request that is waiting for others.
    state = _pending(needed=2, approvals=(ap.Approval("dave", T0),))
    assert ap.decide_deny(state, DAVE, CHECK, T0, "changed my mind").status == ap.DENIED


def test_cancel_is_the_requesters_alone_while_pending() -> None:
    cancelled = ap.decide_cancel(_pending(), ap.Actor("alice"), T0)
    assert cancelled == ap.Cancelled("alice", T0)
    with pytest.raises(NotRequester):
        ap.decide_cancel(_pending(), CAROL, T0)
    with pytest.raises(NotRequester):
        ap.decide_cancel(_pending(), ADMIN, T0)
    with pytest.raises(NotPending):
        ap.decide_cancel(_pending(status=ap.GRANTED), ap.Actor("alice"), T0)


def test_expiry_at_the_deadline_and_not_before() -> None:
    state = _pending()
    deadline = T0 + timedelta(minutes=RULE.pending_minutes)
    assert state.expires_at == deadline
    assert ap.decide_expiry(state, deadline - timedelta(seconds=1)) is None
    assert ap.decide_expiry(state, deadline) == ap.Expired(deadline)
    assert ap.decide_expiry(replace(state, status=ap.GRANTED), deadline) is None


EMERGENCY = EmergencyRule(allowed=True, max_lifetime_minutes=30, review_within_hours=24)


def _glass(**changes: object) -> ap.EmergencyState:
    state = ap.EmergencyState(
        request_id="r2",
        requester="alice",
        emergency=True,
        review_due=ap.review_due_at(T0, EMERGENCY),
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def test_review_by_an_approver_or_an_admin() -> None:
    reviewed = ap.decide_review(_glass(), DAVE, CHECK, T0, "justified", "INC-1 was real")
    assert (reviewed.reviewer, reviewed.verdict, reviewed.late) == ("dave", "justified", False)
    by_admin = ap.decide_review(_glass(), ADMIN, None, T0, "unjustified", "no incident")
    assert by_admin.verdict == "unjustified"
    late = ap.decide_review(_glass(), CAROL, CHECK, T0 + timedelta(hours=25), "justified", "ok")
    assert late.late


@pytest.mark.parametrize(
    ("actor", "changes", "verdict", "comment", "error"),
    [
        (ap.Actor("alice", is_admin=True), {}, "justified", "mine", SelfApproval),
        (BOB, {}, "justified", "x", NotAnApprover),
        (DAVE, {"emergency": False}, "justified", "x", NotReviewable),
        (DAVE, {"reviewed_at": T0}, "justified", "x", AlreadyReviewed),
        (DAVE, {}, "fine", "x", InvalidRequest),
        (DAVE, {}, "justified", " ", InvalidRequest),
    ],
)
def test_review_refusals(
    actor: ap.Actor,
    changes: dict[str, object],
    verdict: str,
    comment: str,
    error: type[EvenError],
) -> None:
    with pytest.raises(error):
        ap.decide_review(_glass(**changes), actor, CHECK, T0, verdict, comment)


def test_review_overdue_exactly_once() -> None:
    due = T0 + timedelta(hours=24)
    assert not ap.review_overdue(_glass(), due - timedelta(seconds=1))
    assert ap.review_overdue(_glass(), due)
    assert not ap.review_overdue(_glass(overdue_recorded=True), due + timedelta(hours=1))
    assert not ap.review_overdue(_glass(reviewed_at=T0), due)
    assert not ap.review_overdue(_glass(emergency=False), due)


def test_approval_view_is_the_api_object() -> None:
    state = _pending(needed=2, approvals=(ap.Approval("carol", T0, "ok"),))
    assert ap.approval_view(state, ["sre-leads"]) == {
        "needed": 2,
        "approvals": [{"username": "carol", "time": "2026-12-06T14:00:00Z", "comment": "ok"}],
        "approver_groups": ["sre-leads"],
        "expires_at": "2026-12-06T15:00:00Z",
    }


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (SelfApproval, 403, False),
        (NotAnApprover, 403, False),
        (NotRequester, 403, False),
        (NotPending, 409, False),
        (AlreadyApproved, 409, False),
        (NotReviewable, 409, False),
        (AlreadyReviewed, 409, False),
    ],
)
def test_problem_mapping(error: type[EvenError], status: int, retry_after: bool) -> None:
    import json

    from even.api.problems import domain_problem

    answer = domain_problem(error("because"))
    assert answer.status_code == status
    assert json.loads(answer.body)["code"] == error.code
    # A final conflict is not worth retrying: no Retry-After invites a client to loop.
    assert ("retry-after" in answer.headers) is retry_after


def test_emergency_and_classic_codes_map_to_403() -> None:
    from even.api.problems import status_for
    from even.errors import ApprovalRequired, EmergencyNotAllowed

    assert status_for(EmergencyNotAllowed("x")) == 403 == status_for(ApprovalRequired("x"))
    assert (EmergencyNotAllowed.code, ApprovalRequired.code) == (
        "emergency_not_allowed",
        "approval_required",
    )
