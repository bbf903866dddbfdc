"""The console's approval pages in process: pending approvals, break-glass reviews, a
request's page and its cancel button, and the request form's approval facts, on an approval
service fake whose decisions are the real state machine's (tests/even/approval_fake.py).
The browser tests cover the same pages on the real service and IdP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from even.api.app import create_app
from even.api.console.sessions import SessionStore
from even.clock import FixedClock
from even.config import Settings, load_settings
from even.identity import Identity
from even.store.db import make_engine
from even.store.schema import upgrade
from even.wiring import build_components
from tests.conftest import make_even_dir
from tests.even.approval_fake import FakeApprovals
from tests.even.test_console import ISSUER, ORIGIN, console_settings, cookie

APPROVAL_POLICY = r"""
defaults:
  max_lifetime_minutes: 60
  reason: {min_length: 10, pattern: '\b[A-Z][A-Z0-9]+-[0-9]+\b'}
roles:
  auditor: {groups: [audit]}
  admin: {groups: [security]}
rules:
  - name: prod-db
    subjects: {groups: [sre]}
    hosts: ["db-*.prod.even.test"]
    logins: ["{username}"]
    approval: {approvers: {groups: [sre-leads]}, count: 1, pending_minutes: 60}
    emergency: {allowed: true, max_lifetime_minutes: 30, review_within_hours: 24}
  - name: lab
    subjects: {users: [bob]}
    hosts: ["*.lab.even.test"]
    logins: ["{username}"]
"""
ALICE = Identity(username="alice", groups=("sre",), issuer=ISSUER, subject="alice")
CAROL = Identity(username="carol", groups=("sre-leads",), issuer=ISSUER, subject="carol")
BOB = Identity(username="bob", groups=(), issuer=ISSUER, subject="bob")
ADMIN = Identity(username="sec", groups=("security",), issuer=ISSUER, subject="sec")
EVIL = "INC-5 <script>alert(1)</script>\u202eevil"


class Browser:
    """One signed-in user's requests: the session cookie, the CSRF token, same-origin."""

    def __init__(self, client: TestClient, sessions: SessionStore, clock, who: Identity):  # type: ignore[no-untyped-def]
        self.client = client
        self.session = sessions.create(who, (clock.now() + timedelta(minutes=30)).timestamp())
        found = sessions.lookup(self.session)
        assert found is not None
        self.csrf = found.csrf_token

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=cookie(self.session), follow_redirects=False)

    def post(self, path: str, form: dict[str, str], *, csrf: bool = True) -> Any:
        data = {**form, "csrf_token": self.csrf} if csrf else form
        headers = {**cookie(self.session), "Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}
        return self.client.post(path, data=data, headers=headers, follow_redirects=False)


@pytest.fixture
def parts(tmp_path: Path, clock: FixedClock) -> Iterator[tuple[TestClient, Any, FakeApprovals]]:
    config = make_even_dir(tmp_path / "even", policy=APPROVAL_POLICY)
    settings: Settings = console_settings(load_settings(config))
    upgrade(make_engine(settings.resolved_database_url))
    components = build_components(settings, clock)
    app = create_app(settings, components=components)
    fake = FakeApprovals(clock)
    app.state.console.approvals = fake
    with TestClient(app, base_url=ORIGIN) as client:
        yield client, app.state.console, fake


def as_user(parts, clock, who: Identity) -> Browser:  # type: ignore[no-untyped-def]
    client, console, _ = parts
    return Browser(client, console.sessions, clock, who)


def test_pending_approvals_list_what_the_caller_may_approve(parts, clock) -> None:
    _, _, fake = parts
    fake.add_pending("r-1", "alice", reason=EVIL)
    carol, alice = as_user(parts, clock, CAROL), as_user(parts, clock, ALICE)
    page = carol.get("/console/approvals")
    assert page.status_code == 200
    assert 'href="/console/approvals" aria-current="page"' in page.text  # in carol's nav
    assert 'action="/console/approvals/r-1/approve"' in page.text
    assert 'formaction="/console/approvals/r-1/deny"' in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>" not in page.text
    assert '<span class="esc">\\u202e</span>' in page.text and "\u202e" not in page.text
    assert "0 of 1" in page.text
    # Alice asked: her own request is never hers to approve, and she is no approver at all.
    own = alice.get("/console/approvals")
    assert own.status_code == 200 and "r-1" not in own.text and "Nothing is waiting" in own.text
    assert 'href="/console/approvals"' not in alice.get("/console/requests").text
    assert carol.get("/console/approvals?offset=-1").status_code == 422


def test_approve_with_a_comment_goes_through_the_service(parts, clock) -> None:
    _, _, fake = parts
    fake.add_pending("r-1", "alice")
    carol = as_user(parts, clock, CAROL)
    done = carol.post("/console/approvals/r-1/approve", {"comment": "OK for INC-1"})
    assert done.status_code == 303
    assert done.headers["location"] == "/console/approvals?done=granted&id=r-1"
    assert fake.calls == [("approve", "carol", "r-1")]
    assert fake.entries["r-1"].view.status == "GRANTED"
    approvals = fake.entries["r-1"].view.approval
    assert approvals is not None and approvals["approvals"][0]["comment"] == "OK for INC-1"
    after = carol.get(done.headers["location"])
    assert "access is now granted" in after.text and "r-1" in after.text
    # Approving again: the service's 409, shown as a page; nothing changes.
    again = carol.post("/console/approvals/r-1/approve", {"comment": ""})
    assert again.status_code == 409 and "no longer pending" in again.text


def test_an_approver_who_has_approved_is_not_offered_the_form_again(parts, clock) -> None:
    _, _, fake = parts
    fake.add_pending("r-2", "alice", needed=2)
    carol = as_user(parts, clock, CAROL)
    assert carol.post("/console/approvals/r-2/approve", {"comment": ""}).status_code == 303
    assert fake.entries["r-2"].view.status == "PENDING_APPROVAL"
    listed = carol.get("/console/approvals?done=approved&id=r-2").text
    assert "You approved this; it waits for 1 more." in listed
    assert 'action="/console/approvals/r-2/approve"' not in listed
    page = carol.get("/console/requests/r-2").text
    assert "Approvals: 1 of 2" in page and "/console/approvals/r-2/approve" not in page


def test_deny_needs_a_comment_and_the_csrf_token(parts, clock) -> None:
    _, _, fake = parts
    fake.add_pending("r-1", "alice")
    carol = as_user(parts, clock, CAROL)
    blank = carol.post("/console/approvals/r-1/deny", {"comment": " "})
    assert blank.status_code == 422 and "a comment is required" in blank.text
    long = carol.post("/console/approvals/r-1/deny", {"comment": "x" * 1025})
    assert long.status_code == 422 and "please check: comment" in long.text
    assert (
        carol.post("/console/approvals/r-1/deny", {"comment": "x"}, csrf=False).status_code == 403
    )
    wrong = carol.post(
        "/console/approvals/r-1/deny", {"comment": "x", "csrf_token": "nope"}, csrf=False
    )
    assert wrong.status_code == 403
    cross = carol.client.post(
        "/console/approvals/r-1/approve",
        data={"csrf_token": carol.csrf},
        headers={**cookie(carol.session), "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    assert fake.calls == [] and fake.entries["r-1"].view.status == "PENDING_APPROVAL"
    denied = carol.post("/console/approvals/r-1/deny", {"comment": "not for INC-1"})
    assert denied.status_code == 303 and "done=denied" in denied.headers["location"]
    assert fake.entries["r-1"].view.status == "DENIED"


def test_self_approval_and_strangers_are_refused(parts, clock) -> None:
    _, _, fake = parts
    fake.add_pending("r-1", "alice")
    alice, bob = as_user(parts, clock, ALICE), as_user(parts, clock, BOB)
    own = alice.post("/console/approvals/r-1/approve", {"comment": ""})
    assert own.status_code == 403 and "your own request" in own.text
    stranger = bob.post("/console/approvals/r-1/approve", {"comment": ""})
    assert stranger.status_code == 403 and "not an approver" in stranger.text
    assert bob.post("/console/approvals/r-9/approve", {"comment": ""}).status_code == 404
    assert fake.entries["r-1"].view.status == "PENDING_APPROVAL"


def test_request_page_for_requester_approver_and_stranger(parts, clock) -> None:
    _, _, fake = parts
    fake.add_pending("r-1", "alice", reason=EVIL)
    alice, carol, bob = (as_user(parts, clock, who) for who in (ALICE, CAROL, BOB))
    # Alice's own request is not in the store (the fake holds it), so she finds it only by
    # being able to decide it - which she cannot: requesters reach their page via the API's
    # read, covered in the browser test. Carol reaches it through her pending list.
    page = carol.get("/console/requests/r-1")
    assert page.status_code == 200
    assert "Approvals: 0 of 1" in page.text and "sre-leads" in page.text
    assert 'action="/console/approvals/r-1/approve"' in page.text
    assert "/cancel" not in page.text  # not hers to cancel
    assert "&lt;script&gt;" in page.text and "<script>" not in page.text
    assert bob.get("/console/requests/r-1").status_code == 404
    assert alice.get("/console/requests/r-1").status_code == 404


def test_cancel_is_the_requesters(parts, clock) -> None:
    _, _, fake = parts
    fake.add_pending("r-1", "alice")
    alice, carol = as_user(parts, clock, ALICE), as_user(parts, clock, CAROL)
    refused = carol.post("/console/requests/r-1/cancel", {})
    assert refused.status_code == 403 and fake.entries["r-1"].view.status == "PENDING_APPROVAL"
    assert alice.post("/console/requests/r-1/cancel", {"x": "1"}, csrf=False).status_code == 403
    done = alice.post("/console/requests/r-1/cancel", {})
    assert done.status_code == 303
    assert done.headers["location"] == "/console/requests/r-1?done=cancelled"
    assert fake.entries["r-1"].view.status == "CANCELLED"
    assert alice.post("/console/requests/r-1/cancel", {}).status_code == 409


def test_reviews_page_records_a_verdict(parts, clock) -> None:
    _, _, fake = parts
    fake.add_emergency("e-1", "alice", reason=EVIL)
    carol, admin, alice = (as_user(parts, clock, who) for who in (CAROL, ADMIN, ALICE))
    page = carol.get("/console/reviews")
    assert page.status_code == 200 and 'action="/console/reviews/e-1"' in page.text
    assert "&lt;script&gt;" in page.text and "<script>" not in page.text
    assert 'href="/console/reviews"' in admin.get("/console/requests").text  # admins review
    assert admin.get("/console/reviews").text.count('action="/console/reviews/e-1"') == 1
    assert "e-1" not in alice.get("/console/reviews").text  # never one's own
    detail = admin.get("/console/requests/e-1")  # the notification's link, for a reviewer
    assert detail.status_code == 200 and "BREAK-GLASS" in detail.text
    assert "a review is due by" in detail.text and 'action="/console/reviews/e-1"' in detail.text
    overdue = carol.get("/console/reviews?overdue=true")
    assert overdue.status_code == 200 and "e-1" not in overdue.text
    assert "OVERDUE" not in page.text
    fake.add_emergency("e-2", "alice", due_hours=-1)
    late = carol.get("/console/reviews?overdue=true")
    assert 'action="/console/reviews/e-2"' in late.text and "OVERDUE" in late.text
    assert 'action="/console/reviews/e-1"' not in late.text
    del fake.entries["e-2"]
    assert carol.get("/console/reviews?overdue=maybe").status_code == 422
    bad = carol.post("/console/reviews/e-1", {"verdict": "fine", "comment": "INC-1 real"})
    assert bad.status_code == 422
    assert (
        carol.post("/console/reviews/e-1", {"verdict": "justified", "comment": ""}).status_code
        == 422
    )
    own = alice.post("/console/reviews/e-1", {"verdict": "justified", "comment": "sure INC-1"})
    assert own.status_code == 403
    assert fake.calls == [("review", "alice", "e-1")]
    done = carol.post("/console/reviews/e-1", {"verdict": "justified", "comment": "INC-1 real"})
    assert done.status_code == 303 and "done=reviewed" in done.headers["location"]
    assert fake.entries["e-1"].view.verdict == "justified"
    assert "Reviewed" in carol.get(done.headers["location"]).text
    assert "e-1" not in admin.get("/console/reviews").text  # reviewed: nothing left to do
    again = admin.post("/console/reviews/e-1", {"verdict": "unjustified", "comment": "INC-1 no"})
    assert again.status_code == 409


def test_request_form_shows_approval_and_break_glass(parts, clock) -> None:
    alice, bob = as_user(parts, clock, ALICE), as_user(parts, clock, BOB)
    page = alice.get("/console/requests").text
    assert "1 of sre-leads; break-glass up to 30 min" in page
    assert 'name="emergency" value="yes"' in page
    assert 'name="emergency"' not in bob.get("/console/requests").text  # his rule has none
    odd = alice.post(
        "/console/requests",
        {"hostname": "db-1.prod.even.test", "reason": "fix INC-1 now", "emergency": "maybe"},
    )
    assert odd.status_code == 422 and 'id="form-error"' in odd.text


# -- on the real approval service -------------------------------------------------------------


@pytest.fixture
def real(parts, clock):  # type: ignore[no-untyped-def]
    """The same app with its own approval service (components.approvals), not the fake."""
    _, console, _ = parts
    console.approvals = console.components.approvals
    return parts


def request_id_of(page: str) -> str:
    found = re.search(r'<code id="request-id">([^<]+)</code>', page)
    assert found is not None, page
    return found.group(1)


def test_a_pending_request_is_approved_by_carol_on_the_real_service(real, clock, user_key) -> None:
    _, console, _ = real
    alice, carol, bob = (as_user(real, clock, who) for who in (ALICE, CAROL, BOB))
    form = {"hostname": "db-1.prod.even.test", "reason": EVIL, "public_key": user_key}
    answer = alice.post("/console/requests", form)
    assert answer.status_code == 202, answer.text
    assert "Waiting for approval" in answer.text and "members of sre-leads" in answer.text
    request_id = request_id_of(answer.text)
    assert f'action="/console/requests/{request_id}/cancel"' in answer.text
    assert f'href="/console/requests/{request_id}"' in answer.text
    assert 'id="certificate"' not in answer.text
    view = console.components.access.get(ALICE, request_id)
    assert view.approval is not None
    assert f'<time datetime="{view.approval["expires_at"]}">' in answer.text
    # The request's page: alice's own (the API's read), carol's as an approver, not bob's.
    assert "Approvals: 0 of 1" in alice.get(f"/console/requests/{request_id}").text
    page = carol.get(f"/console/requests/{request_id}")
    assert page.status_code == 200 and f"/console/approvals/{request_id}/approve" in page.text
    assert "&lt;script&gt;" in page.text and '<span class="esc">\\u202e</span>' in page.text
    assert bob.get(f"/console/requests/{request_id}").status_code == 404
    assert request_id in carol.get("/console/approvals").text

    done = carol.post(f"/console/approvals/{request_id}/approve", {"comment": "OK INC-5"})
    assert done.status_code == 303 and "done=granted" in done.headers["location"]
    granted = console.components.access.get(ALICE, request_id)
    assert granted.status == "GRANTED" and granted.certificate
    records = console.components.audit_log.events(_events("access.approved"))
    mine = [r for r in records if r["request_id"] == request_id]
    assert [r["details"]["approver"] for r in mine] == ["carol"]
    assert mine[0]["details"]["comment"] == "OK INC-5"
    after = alice.get(f"/console/requests/{request_id}").text
    assert "Approvals: 1 of 1" in after and 'id="certificate"' in after and "OK INC-5" in after
    assert request_id not in carol.get("/console/approvals").text


def test_cancel_and_break_glass_on_the_real_service(real, clock, user_key) -> None:
    _, console, _ = real
    alice, carol = as_user(real, clock, ALICE), as_user(real, clock, CAROL)
    form = {"hostname": "db-2.prod.even.test", "reason": "fix INC-6 now", "public_key": user_key}
    request_id = request_id_of(alice.post("/console/requests", form).text)
    assert carol.post(f"/console/requests/{request_id}/cancel", {}).status_code == 403
    assert alice.post(f"/console/requests/{request_id}/cancel", {}).status_code == 303
    assert console.components.access.get(ALICE, request_id).status == "CANCELLED"

    urgent = alice.post("/console/requests", {**form, "emergency": "yes"})
    assert urgent.status_code == 201 and "BREAK-GLASS" in urgent.text
    assert 'id="certificate"' in urgent.text and "a review is due by" in urgent.text
    emergency_id = request_id_of(urgent.text)
    assert console.components.access.get(ALICE, emergency_id).lifetime_minutes == 30
    assert emergency_id in carol.get("/console/reviews").text
    reviewed = carol.post(
        f"/console/reviews/{emergency_id}", {"verdict": "unjustified", "comment": "no INC-6"}
    )
    assert reviewed.status_code == 303
    shown = console.components.access.get(ALICE, emergency_id)
    assert (shown.reviewed_by, shown.verdict) == ("carol", "unjustified")
    page = alice.get(f"/console/requests/{emergency_id}").text
    assert "Reviewed by <strong>carol</strong>: unjustified" in page


def _events(kind: str):  # type: ignore[no-untyped-def]
    from even.service.audit_log import EventFilters

    return EventFilters(type=kind)
