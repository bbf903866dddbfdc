"""Approvals and break-glass through the API, in process on an injected clock (SPEC §11).

The same use cases the real-IdP and real-sshd tests drive (tests/integration/
test_approvals_e2e.py), checked here in milliseconds: 202 and nothing signed, the error codes
in the contract's order, the grant at the last approval (lifetime from then, `approvers` on
the record), deny / cancel / expiry records, break-glass with its cap, review and one overdue
record, and the classic API's `approval_required`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audit import store as audit_store
from even.clock import FixedClock, rfc3339
from even.config import load_settings
from even.store.db import make_engine
from even.store.schema import upgrade
from even.wiring import Components
from tests.conftest import APPROVAL_POLICY, make_even_dir
from tests.even.conftest import auth

HOST = "db-1.approve.even.test"
VAULT = "vault-1.approve.even.test"
PATH = "/v1/access-requests"


@pytest.fixture
def even_config(tmp_path: Path) -> Path:
    config = make_even_dir(tmp_path / "even", APPROVAL_POLICY)
    upgrade(make_engine(load_settings(config).resolved_database_url))
    return config


def _as(components: Components, clock: FixedClock, user: str, *groups: str) -> dict[str, str]:
    return auth(components, clock, user, groups)


def _request(
    client: TestClient, headers: dict[str, str], key: str, host: str = HOST, **extra: Any
) -> Any:
    body = {"hostname": host, "reason": "migrate INC-42", "public_key": key, **extra}
    return client.post(PATH, headers=headers, json=body)


def _records(components: Components, request_id: str) -> list[dict[str, Any]]:
    with components.engine.connect() as conn:
        return audit_store.records_for_request(conn, request_id)


def _types(components: Components, request_id: str) -> list[str]:
    return [r["type"] for r in _records(components, request_id)]


@pytest.fixture
def pending(client: TestClient, components: Components, clock: FixedClock, user_key: str) -> str:
    answer = _request(client, _as(components, clock, "alice", "sre"), user_key)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_a_request_that_needs_approval_answers_202_and_signs_nothing(
    client: TestClient, components: Components, clock: FixedClock, user_key: str
) -> None:
    answer = _request(client, _as(components, clock, "alice", "sre"), user_key)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "PENDING_APPROVAL"
    assert body["certificate"] is None and body["serial"] is None and body["receipt"] is None
    assert body["approval"] == {
        "needed": 1,
        "approvals": [],
        "approver_groups": ["sre-leads"],
        "expires_at": rfc3339(clock.now() + timedelta(minutes=60)),
    }
    assert _types(components, body["id"]) == ["access.requested", "access.pending"]
    # The request is checked in full before anyone is asked: a bad reason is refused now.
    refused = client.post(
        PATH,
        headers=_as(components, clock, "alice", "sre"),
        json={"hostname": HOST, "reason": "x", "public_key": user_key},
    )
    assert refused.status_code == 422 and refused.json()["code"] == "reason_rejected"


def test_codes_in_order_then_the_last_approval_grants_from_that_moment(
    client: TestClient, components: Components, clock: FixedClock, pending: str
) -> None:
    approve = f"{PATH}/{pending}/approve"
    bob = client.post(approve, headers=_as(components, clock, "bob"), json={})
    assert (bob.status_code, bob.json()["code"]) == (403, "not_an_approver")
    # The requester is refused as such, even holding an approver group.
    alice = client.post(approve, headers=_as(components, clock, "alice", "sre-leads"))
    assert (alice.status_code, alice.json()["code"]) == (403, "self_approval")
    clock.moment += timedelta(minutes=7)
    carol = client.post(approve, headers=_as(components, clock, "carol"), json={"comment": "ok"})
    assert carol.status_code == 200, carol.text
    assert carol.json()["status"] == "GRANTED" and carol.json()["certificate"] is None
    again = client.post(approve, headers=_as(components, clock, "erin", "sre-leads"))
    assert (again.status_code, again.json()["code"]) == (409, "not_pending")
    mine = client.get(f"{PATH}/{pending}", headers=_as(components, clock, "alice", "sre")).json()
    assert mine["status"] == "GRANTED" and mine["certificate"].startswith("ssh-ed25519-cert")
    assert mine["receipt"]["seq"] > 0 and mine["ssh_command"]
    # Lifetime from the approval, not from the request.
    assert mine["valid_after"] == rfc3339(clock.now() - timedelta(seconds=60))
    assert mine["valid_before"] == rfc3339(clock.now() + timedelta(minutes=60))
    assert mine["approval"]["approvals"][0]["username"] == "carol"
    records = _records(components, pending)
    assert [r["type"] for r in records] == [
        "access.requested",
        "access.pending",
        "access.approved",
        "access.granted",
    ]
    assert records[2]["details"]["approver"] == "carol" and records[2]["details"]["count"] == 1
    assert records[3]["details"]["approvers"] == ["carol"]
    assert mine["receipt"]["seq"] == records[3]["seq"]
    # Auditors see the request, never the certificate.
    seen = client.get(f"{PATH}/{pending}", headers=_as(components, clock, "audrey", "audit"))
    assert seen.status_code == 200 and seen.json()["certificate"] is None
    assert seen.json()["receipt"] is None
    assert client.get(f"{PATH}/{pending}", headers=_as(components, clock, "bob")).status_code == 404


def test_count_two_needs_two_distinct_approvers(
    client: TestClient, components: Components, clock: FixedClock, user_key: str
) -> None:
    answer = _request(client, _as(components, clock, "alice"), user_key, host=VAULT)
    assert answer.status_code == 202, answer.text
    rid = answer.json()["id"]
    approve = f"{PATH}/{rid}/approve"
    first = client.post(approve, headers=_as(components, clock, "carol"))
    assert first.json()["status"] == "PENDING_APPROVAL"
    assert len(first.json()["approval"]["approvals"]) == 1
    twice = client.post(approve, headers=_as(components, clock, "carol"))
    assert (twice.status_code, twice.json()["code"]) == (409, "already_approved")
    second = client.post(approve, headers=_as(components, clock, "dave"))
    assert second.json()["status"] == "GRANTED"
    granted = [r for r in _records(components, rid) if r["type"] == "access.granted"]
    assert granted[0]["details"]["approvers"] == ["carol", "dave"]


def test_deny_cancel_and_expiry_each_end_a_pending_request(
    client: TestClient, components: Components, clock: FixedClock, user_key: str
) -> None:
    alice = _as(components, clock, "alice", "sre")
    ids = [_request(client, alice, user_key).json()["id"] for _ in range(3)]
    no_comment = client.post(
        f"{PATH}/{ids[0]}/deny", headers=_as(components, clock, "carol"), json={}
    )
    assert no_comment.status_code == 422
    denied = client.post(
        f"{PATH}/{ids[0]}/deny", headers=_as(components, clock, "carol"), json={"comment": "no"}
    )
    assert denied.json()["status"] == "DENIED"
    record = _records(components, ids[0])[-1]
    assert record["type"] == "access.denied" and record["details"]["denied_by"] == "carol"
    other = client.post(f"{PATH}/{ids[1]}/cancel", headers=_as(components, clock, "carol"))
    assert (other.status_code, other.json()["code"]) == (403, "not_requester")
    cancelled = client.post(f"{PATH}/{ids[1]}/cancel", headers=alice)
    assert cancelled.json()["status"] == "CANCELLED"
    assert _types(components, ids[1])[-1] == "access.cancelled"
    clock.moment += timedelta(minutes=59)
    assert components.jobs.approvals is not None
    assert components.jobs.approvals.expire_pending_once() == []
    clock.moment += timedelta(minutes=1)
    assert components.jobs.approvals.expire_pending_once() == [ids[2]]
    assert components.jobs.approvals.expire_pending_once() == []
    expired = client.get(f"{PATH}/{ids[2]}", headers=alice).json()
    assert expired["status"] == "EXPIRED"
    assert _types(components, ids[2])[-1] == "access.expired"
    late = client.post(f"{PATH}/{ids[2]}/approve", headers=_as(components, clock, "carol"))
    assert (late.status_code, late.json()["code"]) == (409, "not_pending")


def test_lists_for_approvers(
    client: TestClient, components: Components, clock: FixedClock, pending: str
) -> None:
    carol = client.get("/v1/approvals", headers=_as(components, clock, "carol")).json()
    assert [i["id"] for i in carol["items"]] == [pending]
    assert carol["items"][0]["approval"]["needed"] == 1
    # Never one's own, and nothing for someone who approves no rule.
    own = client.get("/v1/approvals", headers=_as(components, clock, "alice", "sre-leads"))
    assert own.json()["items"] == []
    assert client.get("/v1/approvals", headers=_as(components, clock, "bob")).json()["items"] == []


def test_break_glass_grants_at_once_capped_then_is_reviewed_once(
    client: TestClient, components: Components, clock: FixedClock, user_key: str
) -> None:
    alice = _as(components, clock, "alice", "sre")
    too_long = _request(client, alice, user_key, emergency=True, lifetime_minutes=45)
    assert (too_long.status_code, too_long.json()["code"]) == (422, "lifetime_too_long")
    answer = _request(client, alice, user_key, emergency=True)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["emergency"] is True and body["certificate"] and body["receipt"]
    assert body["valid_before"] == rfc3339(clock.now() + timedelta(minutes=30))
    rid = body["id"]
    granted = _records(components, rid)[-1]
    assert granted["type"] == "access.granted" and granted["details"]["emergency"] is True
    not_allowed = _request(client, alice, user_key, host=VAULT, emergency=True)
    assert (not_allowed.status_code, not_allowed.json()["code"]) == (403, "emergency_not_allowed")
    reviews = client.get("/v1/reviews", headers=_as(components, clock, "carol")).json()["items"]
    assert [r["id"] for r in reviews] == [rid] and reviews[0]["overdue"] is False
    review = {"verdict": "justified", "comment": "db down, INC-43"}
    own = client.post(f"{PATH}/{rid}/review", headers=alice, json=review)
    assert (own.status_code, own.json()["code"]) == (403, "self_approval")
    bob = client.post(f"{PATH}/{rid}/review", headers=_as(components, clock, "bob"), json=review)
    assert (bob.status_code, bob.json()["code"]) == (403, "not_an_approver")
    # Past the window: exactly one overdue record, however many rounds run.
    clock.moment += timedelta(hours=24)
    overdue = client.get("/v1/reviews?overdue=true", headers=_as(components, clock, "carol"))
    assert [r["id"] for r in overdue.json()["items"]] == [rid]
    assert components.jobs.approvals is not None
    assert components.jobs.approvals.review_overdue_once() == [rid]
    assert components.jobs.approvals.review_overdue_once() == []
    admin = _as(components, clock, "sam", "security")
    done = client.post(f"{PATH}/{rid}/review", headers=admin, json=review)
    assert done.status_code == 200, done.text
    assert done.json()["verdict"] == "justified" and done.json()["reviewed_by"] == "sam"
    twice = client.post(f"{PATH}/{rid}/review", headers=admin, json=review)
    assert (twice.status_code, twice.json()["code"]) == (409, "already_reviewed")
    types = _types(components, rid)
    assert types.count("access.review_overdue") == 1 and types[-1] == "access.reviewed"


def test_an_ordinary_grant_is_not_reviewable_nor_approvable(
    client: TestClient, components: Components, clock: FixedClock, user_key: str
) -> None:
    alice = _as(components, clock, "alice", "sre")
    plain = _request(client, alice, user_key, host="web-1.prod.even.test")
    assert plain.status_code == 201
    rid = plain.json()["id"]
    review = {"verdict": "justified", "comment": "fine"}
    admin = _as(components, clock, "sam", "security")
    answer = client.post(f"{PATH}/{rid}/review", headers=admin, json=review)
    assert (answer.status_code, answer.json()["code"]) == (409, "not_reviewable")
    answer = client.post(f"{PATH}/{rid}/approve", headers=_as(components, clock, "carol"))
    assert (answer.status_code, answer.json()["code"]) == (403, "not_an_approver")
    answer = client.post(f"{PATH}/{rid}/approve", headers=alice)
    assert (answer.status_code, answer.json()["code"]) == (403, "self_approval")
    missing = client.post(f"{PATH}/nope/approve", headers=_as(components, clock, "carol"))
    assert missing.status_code == 404


def test_the_policy_is_checked_again_at_the_last_approval(
    client: TestClient, components: Components, clock: FixedClock, pending: str, even_config: Path
) -> None:
    # The rule now caps lifetimes below what was granted by default at request time... and
    # the requester's group no longer matters: alice is still a subject by name. Make the
    # reason rule stricter instead, so the re-check refuses.
    from even.policy import parse_policy

    stricter = APPROVAL_POLICY.replace("reason: {min_length: 5}", "reason: {min_length: 50}", 1)
    components.access.replace_policy(parse_policy(stricter.encode()))
    answer = client.post(f"{PATH}/{pending}/approve", headers=_as(components, clock, "carol"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "DENIED"
    assert answer.json()["status_reason"] == "reason_rejected"
    last = _records(components, pending)[-1]
    assert last["type"] == "access.denied" and last["details"]["recheck"] is True
    assert not [r for r in _records(components, pending) if r["type"] == "access.granted"]


@pytest.fixture
def classic_keys(client: TestClient, components: Components, clock: FixedClock, user_key: str):
    put = client.put(
        "/v1/users/me/keys", headers=_as(components, clock, "alice"), json={"keys": [user_key]}
    )
    assert put.status_code == 200, put.text
    return user_key


def test_the_classic_api_refuses_a_rule_that_needs_approval_in_plain_text(
    client: TestClient, components: Components, clock: FixedClock, classic_keys: str
) -> None:
    if components.push is None:
        pytest.skip("push mode is not configured in this directory")
    answer = client.post(
        "/access-requests",
        headers=_as(components, clock, "alice"),
        json={"hostname": HOST, "reason": "migrate INC-42", "username": "alice"},
    )
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"].startswith("text/plain"), answer.text
    assert "approval_required" in answer.text
    listed = client.get("/access-requests", headers=_as(components, clock, "alice")).json()
    assert listed[0]["status"] == "DENIED" and listed[0]["status_reason"] == "approval_required"


def test_pending_approvals_are_a_metrics_gauge(
    client: TestClient, components: Components, clock: FixedClock, pending: str
) -> None:
    text = client.get("/metrics").text
    assert "even_pending_approvals 1.0" in text
    client.post(f"{PATH}/{pending}/cancel", headers=_as(components, clock, "alice", "sre"))
    assert "even_pending_approvals 0.0" in client.get("/metrics").text
