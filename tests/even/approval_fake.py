"""An in-memory approval service for the console's page tests: the service's interface, with
its decisions taken by the real state machine (`even.approvals.decide_*`), so errors come in
the contract's order. Storage and the grant itself are not simulated beyond a status change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from even.approvals import (
    GRANTED,
    PENDING_APPROVAL,
    Actor,
    EmergencyState,
    PendingState,
    approval_view,
    decide_approve,
    decide_cancel,
    decide_deny,
    decide_review,
)
from even.clock import FixedClock, rfc3339
from even.errors import NotFound
from even.identity import Identity
from even.policy_approval import ApproverCheck
from even.service.models import AccessRequestView


@dataclass
class Entry:
    view: AccessRequestView
    approvers: ApproverCheck
    pending: PendingState | None = None
    emergency: EmergencyState | None = None


def make_view(request_id: str, username: str, status: str, **extra: Any) -> AccessRequestView:
    fields: dict[str, Any] = {
        "id": request_id,
        "status": status,
        "username": username,
        "login": username,
        "hostname": "db-1.prod.even.test",
        "mode": "certificate",
        "reason": "fix INC-1 now",
        "rule": "prod-db",
        "certificate": None,
        "serial": None,
        "key_id": None,
        "principals": [],
        "valid_after": None,
        "valid_before": None,
        "bastion": None,
        "bastion_certificate": None,
        "bastion_serial": None,
        "lifetime_minutes": 30,
        "status_reason": None,
        "created": "2026-01-02T03:04:05Z",
        "last_modified": "2026-01-02T03:04:05Z",
    }
    fields.update(extra)
    return AccessRequestView(**fields)


@dataclass
class FakeApprovals:
    clock: FixedClock
    groups: list[str] = field(default_factory=lambda: ["sre-leads"])
    admin_group: str = "security"
    entries: dict[str, Entry] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def _actor(self, identity: Identity) -> Actor:
        return Actor(identity.username, identity.groups, self.admin_group in identity.groups)

    def _entry(self, request_id: str) -> Entry:
        if request_id not in self.entries:
            raise NotFound("no such access request")
        return self.entries[request_id]

    def _check(self) -> ApproverCheck:
        return ApproverCheck(frozenset(), frozenset(self.groups))

    def add_pending(self, request_id: str, username: str, needed: int = 1, **extra: Any) -> None:
        state = PendingState(
            request_id, username, PENDING_APPROVAL, needed, self.clock.now() + timedelta(hours=1)
        )
        view = make_view(request_id, username, PENDING_APPROVAL, **extra)
        entry = Entry(view, self._check(), pending=state)
        self.entries[request_id] = entry
        self._refresh(entry)

    def add_emergency(
        self, request_id: str, username: str, due_hours: int = 24, **extra: Any
    ) -> None:
        due = self.clock.now() + timedelta(hours=due_hours)
        state = EmergencyState(request_id, username, emergency=True, review_due=due)
        stamp = rfc3339(self.clock.now())
        view = make_view(
            request_id,
            username,
            GRANTED,
            emergency=True,
            review_due=rfc3339(due),
            valid_after=stamp,
            valid_before=rfc3339(self.clock.now() + timedelta(minutes=30)),
            **extra,
        )
        self.entries[request_id] = Entry(view, self._check(), emergency=state)

    def _refresh(self, entry: Entry, status: str | None = None) -> None:
        assert entry.pending is not None
        shown = approval_view(entry.pending, self.groups)
        entry.view = replace(entry.view, approval=shown, status=status or entry.pending.status)

    def _set_status(self, entry: Entry, status: str) -> None:
        assert entry.pending is not None
        entry.pending = replace(entry.pending, status=status)
        self._refresh(entry)

    def approve(
        self, identity: Identity, request_id: str, comment: str | None
    ) -> AccessRequestView:
        self.calls.append(("approve", identity.username, request_id))
        entry = self._entry(request_id)
        if entry.pending is None:
            raise NotFound("no such pending request")
        now = self.clock.now()
        approved = decide_approve(
            entry.pending, self._actor(identity), entry.approvers, now, comment
        )
        entry.pending = replace(
            entry.pending, approvals=(*entry.pending.approvals, approved.approval)
        )
        self._set_status(entry, approved.status)
        return entry.view

    def deny(self, identity: Identity, request_id: str, comment: str) -> AccessRequestView:
        self.calls.append(("deny", identity.username, request_id))
        entry = self._entry(request_id)
        assert entry.pending is not None
        rejected = decide_deny(
            entry.pending, self._actor(identity), entry.approvers, self.clock.now(), comment
        )
        self._set_status(entry, rejected.status)
        return entry.view

    def cancel(self, identity: Identity, request_id: str) -> AccessRequestView:
        self.calls.append(("cancel", identity.username, request_id))
        entry = self._entry(request_id)
        assert entry.pending is not None
        cancelled = decide_cancel(entry.pending, self._actor(identity), self.clock.now())
        self._set_status(entry, cancelled.status)
        return entry.view

    def review(
        self, identity: Identity, request_id: str, verdict: str, comment: str
    ) -> AccessRequestView:
        self.calls.append(("review", identity.username, request_id))
        entry = self._entry(request_id)
        assert entry.emergency is not None
        done = decide_review(
            entry.emergency,
            self._actor(identity),
            entry.approvers,
            self.clock.now(),
            verdict,
            comment,
        )
        entry.emergency = replace(entry.emergency, reviewed_at=done.time)
        entry.view = replace(
            entry.view, reviewed_by=done.reviewer, verdict=done.verdict, review_comment=comment
        )
        return entry.view

    def pending_for(
        self, identity: Identity, *, limit: int, offset: int
    ) -> list[AccessRequestView]:
        found: list[AccessRequestView] = [
            e.view
            for e in self.entries.values()
            if e.pending is not None
            and e.pending.is_pending(self.clock.now())
            and e.approvers.is_approver(
                identity.username, identity.groups, requester=e.pending.requester
            )
        ]
        return found[offset : offset + limit]

    def reviews_for(
        self, identity: Identity, *, overdue: bool, limit: int, offset: int
    ) -> list[AccessRequestView]:
        actor = self._actor(identity)
        found: list[AccessRequestView] = []
        for e in self.entries.values():
            state = e.emergency
            if state is None or state.reviewed_at is not None or state.requester == actor.username:
                continue
            if not (actor.is_admin or e.approvers.is_listed(actor.username, actor.groups)):
                continue
            if overdue and (state.review_due is None or self.clock.now() < state.review_due):
                continue
            found.append(e.view)
        return found[offset : offset + limit]
