"""Approval request bodies and answer shapes (even.api.approval_schemas), and the `emergency`
field of an access request, which is refused until this server grants break-glass."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from even.api.approval_schemas import (
    AccessAnswer,
    ApprovalObject,
    ApproveBody,
    DenyBody,
    ReviewBody,
)
from even.api.schemas import AccessRequestBody
from even.identity.dev_issuer import DevIssuer
from tests.even.test_api import bearer, grant_body


def test_bodies_accept_what_the_contract_says() -> None:
    assert ApproveBody.model_validate({}).comment is None
    assert ApproveBody.model_validate({"comment": "ok for INC-1"}).comment == "ok for INC-1"
    assert DenyBody.model_validate({"comment": "freeze"}).comment == "freeze"
    review = ReviewBody.model_validate({"verdict": "unjustified", "comment": "no incident"})
    assert (review.verdict, review.comment) == ("unjustified", "no incident")
    # Like a reason: other control and bidi characters are stored as sent (shown escaped).
    assert DenyBody.model_validate({"comment": "a\tb\u202e"}).comment == "a\tb\u202e"


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (ApproveBody, {"comment": ""}),
        (ApproveBody, {"comment": "   "}),
        (ApproveBody, {"comment": "a\x00b"}),
        (ApproveBody, {"comment": "\ud800"}),
        (ApproveBody, {"comment": "x" * 1025}),
        (ApproveBody, {"comment": 5}),
        (ApproveBody, {"comment": "ok", "count": 2}),
        (DenyBody, {}),
        (DenyBody, {"comment": " \n"}),
        (ReviewBody, {"verdict": "fine", "comment": "x"}),
        (ReviewBody, {"verdict": "justified"}),
        (ReviewBody, {"verdict": "justified", "comment": ""}),
    ],
)
def test_bodies_refuse_the_rest(model: type[Any], body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(body)


def test_a_comment_may_be_as_long_as_a_reason() -> None:
    assert DenyBody.model_validate({"comment": "é" * 1024}).comment == "é" * 1024


def test_answer_carries_the_approval_object() -> None:
    approval = ApprovalObject(
        needed=1, approvals=[], approver_groups=["sre-leads"], expires_at="2026-12-06T14:32:00Z"
    )
    fields = dict.fromkeys(AccessAnswer.model_fields)
    fields.update(
        id="r1",
        status="PENDING_APPROVAL",
        username="alice",
        login="alice",
        hostname="db-1.prod.even.test",
        mode="certificate",
        principals=[],
        approval=approval,
        emergency=False,
    )
    dumped = AccessAnswer.model_validate(fields).model_dump()
    assert dumped["approval"]["approver_groups"] == ["sre-leads"]
    assert dumped["certificate"] is None and dumped["status"] == "PENDING_APPROVAL"


def test_emergency_is_a_strict_boolean() -> None:
    base = {"hostname": "h.lab.even.test", "reason": "INC-1 down"}
    assert AccessRequestBody.model_validate(base).emergency is False
    with pytest.raises(ValidationError):
        AccessRequestBody.model_validate({**base, "emergency": "yes"})
    # The body carries it to the use case, which decides by the rule (emergency.allowed).
    assert AccessRequestBody.model_validate({**base, "emergency": True}).to_input().emergency


@pytest.fixture
def dev(components: Any) -> DevIssuer:
    assert components.dev_issuer is not None
    issuer: DevIssuer = components.dev_issuer
    return issuer


def test_emergency_request_is_refused_not_granted(
    client: Any, dev: DevIssuer, clock: Any, user_key: str
) -> None:
    answer = client.post(
        "/v1/access-requests",
        headers=bearer(dev, clock),
        json=grant_body(user_key, emergency=True),
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "emergency_not_allowed"
