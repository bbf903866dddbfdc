"""even.store.approval_store on a migrated SQLite database: rows in, approval values out, and
the job and listing queries, each in the caller's own transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from even import approvals as ap
from even.errors import AlreadyApproved, AlreadyReviewed
from even.policy_approval import ApproverCheck
from even.store import approval_store as store
from even.store.db import make_engine
from even.store.schema import upgrade
from even.store.tables import AccessRequestRow

T0 = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'even.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _request(engine: Engine, request_id: str, username: str, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            _requests.insert().values(
                id=request_id,
                status=status,
                username=username,
                login=username,
                hostname="db-1.prod.even.test",
                mode="certificate",
                reason="INC-1 migrate",
                lifetime_minutes=60,
                principals="[]",
                created="2026-12-06T14:00:00Z",
                last_modified="2026-12-06T14:00:00Z",
            )
        )


def _pending(engine: Engine, request_id: str, username: str = "alice", **kw: object) -> None:
    _request(engine, request_id, username, ap.PENDING_APPROVAL)
    values: dict[str, object] = {
        "rule": "prod-db",
        "needed": 2,
        "approver_groups": ["sre-leads"],
        "expires_at": T0 + timedelta(hours=1),
        **kw,
    }
    with engine.begin() as conn:
        store.open_pending(conn, request_id=request_id, **values)  # type: ignore[arg-type]


def test_pending_state_round_trip_and_the_approval_object(engine: Engine) -> None:
    _pending(engine, "r1")
    with engine.begin() as conn:
        store.add_approval(conn, "r1", ap.Approval("carol", T0 + timedelta(minutes=1), "ok"))
    with engine.connect() as conn:
        state = store.load_pending(conn, "r1")
        assert state is not None
        assert (state.requester, state.status, state.needed) == ("alice", ap.PENDING_APPROVAL, 2)
        assert state.expires_at == T0 + timedelta(hours=1)
        assert state.approvals == (ap.Approval("carol", T0 + timedelta(minutes=1), "ok"),)
        assert store.load_pending(conn, "r1", needed=3).needed == 3  # type: ignore[union-attr]
        assert store.rule_of(conn, "r1") == "prod-db"
        assert store.approval_object(conn, "r1") == {
            "needed": 2,
            "approvals": [{"username": "carol", "time": "2026-12-06T14:01:00Z", "comment": "ok"}],
            "approver_groups": ["sre-leads"],
            "expires_at": "2026-12-06T15:00:00Z",
        }
        assert store.load_pending(conn, "nope") is None
        assert store.approval_object(conn, "nope") is None
    # The decision function sees the stored approvals: carol may not approve again.
    with pytest.raises(AlreadyApproved):
        ap.decide_approve(
            state, ap.Actor("carol"), ApproverCheck(frozenset({"carol"}), frozenset()), T0
        )


def test_the_database_refuses_a_second_approval_by_the_same_person(engine: Engine) -> None:
    _pending(engine, "r1")
    with engine.begin() as conn:
        store.add_approval(conn, "r1", ap.Approval("carol", T0))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        store.add_approval(conn, "r1", ap.Approval("carol", T0 + timedelta(seconds=1)))


def test_expiry_job_finds_only_pending_requests_past_their_deadline(engine: Engine) -> None:
    _pending(engine, "early", expires_at=T0 + timedelta(minutes=10))
    _pending(engine, "late", expires_at=T0 + timedelta(minutes=30))
    _pending(engine, "granted", expires_at=T0 + timedelta(minutes=5))
    with engine.begin() as conn:
        conn.execute(update(_requests).where(_requests.c.id == "granted").values(status="GRANTED"))
        assert store.due_for_expiry(conn, T0 + timedelta(minutes=9)) == []
        assert store.due_for_expiry(conn, T0 + timedelta(minutes=10)) == ["early"]
        assert store.due_for_expiry(conn, T0 + timedelta(hours=1)) == ["early", "late"]


def test_pending_under_the_callers_rules_never_their_own(engine: Engine) -> None:
    _pending(engine, "a1", "alice")
    _pending(engine, "c1", "carol")
    _pending(engine, "other", "alice", rule="lab")
    _pending(engine, "old", "alice", expires_at=T0)
    with engine.connect() as conn:
        listed = store.pending_under(conn, ["prod-db"], not_requested_by="carol", now=T0)
        assert listed == ["a1"]
        assert store.pending_under(conn, [], not_requested_by="carol", now=T0) == []
        both = store.pending_under(conn, ["prod-db", "lab"], not_requested_by="dave", now=T0)
        assert sorted(both) == ["a1", "c1", "other"]
        assert store.pending_under(
            conn, ["prod-db", "lab"], not_requested_by="dave", now=T0, limit=1, offset=1
        ) == [both[1]]


def test_break_glass_review_and_overdue_exactly_once(engine: Engine) -> None:
    _request(engine, "g1", "alice", "GRANTED")
    _request(engine, "g2", "bob", "GRANTED")
    due = T0 + timedelta(hours=24)
    with engine.begin() as conn:
        store.open_emergency(conn, request_id="g1", rule="prod-db", review_due=due)
        store.open_emergency(conn, request_id="g2", rule="lab", review_due=due)
    with engine.begin() as conn:
        state = store.load_emergency(conn, "g1")
        assert state == ap.EmergencyState("g1", "alice", True, due)
        assert store.load_pending(conn, "g1") is None  # break-glass never waited
        assert store.due_for_overdue(conn, due - timedelta(seconds=1)) == []
        assert store.due_for_overdue(conn, due) == ["g1", "g2"]
        assert store.reviews_under(conn, ["prod-db"], not_requested_by="carol") == ["g1"]
        assert store.reviews_under(conn, None, not_requested_by="alice") == ["g2"]
        assert store.reviews_under(conn, None, not_requested_by="x", overdue_at=T0) == []
        assert store.record_overdue(conn, "g2", due)
        assert not store.record_overdue(conn, "g2", due + timedelta(hours=1))  # once
        reviewed = ap.decide_review(state, ap.Actor("carol", (), True), None, T0, "justified", "ok")
        store.record_review(conn, "g1", reviewed)
    with engine.connect() as conn:
        after = store.load_emergency(conn, "g1")
        assert after is not None and after.reviewed_at == T0
        assert store.due_for_overdue(conn, due + timedelta(hours=2)) == []
        assert store.load_emergency(conn, "g2").overdue_recorded  # type: ignore[union-attr]
        with pytest.raises(AlreadyReviewed):
            ap.decide_review(after, ap.Actor("dave", (), True), None, T0, "justified", "again")


def test_record_decision(engine: Engine) -> None:
    _pending(engine, "r1")
    with engine.begin() as conn:
        store.record_decision(conn, "r1", "dave", "freeze")
    from sqlalchemy import select

    from even.store.approval_tables import ApprovalStateRow

    states = ApprovalStateRow.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        row = conn.execute(select(states).where(states.c.request_id == "r1")).one()
    assert (row.decided_by, row.decision_comment) == ("dave", "freeze")
