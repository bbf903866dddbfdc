"""Approvals and break-glass reviews (SPEC §11): the use cases over a request's approval state.

Each call is one unit of work under the global writer lock (`commit_work`): the request's
state is read *inside* it, `even.approvals` decides, and the audit record(s) and row changes
commit together. The writer order is one across replicas (a PostgreSQL advisory lock), so
two approvals racing for the last place are serialised: the first grants, the second reads
GRANTED and gets 409 `not_pending`.

The approval that reaches the count grants in that same unit through the ordinary grant
path: certificate mode signs with `CertificateGrants.grant_in` (lifetime from now), push mode
records `access.push_started` and then pushes through `PushAccessService` like a direct
push grant. Before either, the policy is checked again as it is now, against what the
request asked for (the requester's groups and key as stored with it); a refusal then ends
the request DENIED with its code. Approvers are judged against the current policy's rule of
the name the request was decided by.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from audit import store as audit_store
from audit.chain import AuditEvent
from audit.signing import AuditSigner
from even.approvals import (
    Actor,
    EmergencyState,
    decide_approve,
    decide_cancel,
    decide_deny,
    decide_review,
)
from even.clock import Clock, rfc3339
from even.errors import (
    Denied,
    NotAnApprover,
    NotFound,
    NotPending,
    NotRequester,
    PolicyRejected,
    SelfApproval,
)
from even.identity import Identity
from even.policy import Subject
from even.policy_approval import ApproverCheck
from even.service.admission import Asked, PolicyGate
from even.service.certificate_access import CertificateGrants
from even.service.models import AccessRequestView
from even.service.pending import restore
from even.service.push_access import PushAccessService
from even.service.views import view
from even.sshkeys import parse_public_key
from even.store import access_requests, approval_store
from even.store.db import read_only
from even.store.unit_of_work import Transaction, commit_work


class ApprovalService:
    def __init__(
        self,
        *,
        engine: Engine,
        gate: PolicyGate,
        certificate: CertificateGrants,
        signer: AuditSigner,
        clock: Clock,
        push: PushAccessService | None = None,
    ) -> None:
        self._engine = engine
        self._gate = gate
        self._certificate = certificate
        self._signer = signer
        self._clock = clock
        self._push = push

    # -- decisions ------------------------------------------------------------------------

    def approve(
        self, identity: Identity, request_id: str, comment: str | None
    ) -> AccessRequestView:
        started: list[Any] = []

        def work(tx: Transaction) -> dict[str, Any] | None:
            row, now = self._row(tx, request_id), self._clock.now()
            actor = self._actor(identity)
            check = self._approvers(row)
            needed = None if check is None else self._needed(row)
            state = approval_store.load_pending(tx.conn, request_id, needed=needed)
            if state is None:
                _not_for_approval(row, actor)
            assert state is not None
            approved = decide_approve(state, actor, check, now, comment)
            approval_store.add_approval(tx.conn, request_id, approved.approval)
            _append(tx, "access.approved", row, now, {
                "approver": actor.username,
                "comment": approved.approval.comment,
                "count": approved.count,
                "needed": approved.needed,
                "rule": row.rule,
            })  # fmt: skip
            if not approved.grant_now:
                access_requests.set_status(
                    tx, request_id, last_modified=rfc3339(now), last_modified_by=actor.username
                )
                return None
            return self._grant(tx, row, now, list(approved.approvers), actor.username, started)

        commit_work(self._engine, work)
        if started and self._push is not None:
            # Push mode: push_started is committed; push and record the outcome as a direct
            # push grant does (a failure is FAILED with its record, and 502 here).
            self._push.finish_approved(*started)
        # The approver's answer: never the credential (the requester collects it with GET).
        return self.view(request_id)

    def deny(self, identity: Identity, request_id: str, comment: str) -> AccessRequestView:
        def work(tx: Transaction) -> None:
            row, now = self._row(tx, request_id), self._clock.now()
            actor = self._actor(identity)
            state = approval_store.load_pending(tx.conn, request_id)
            if state is None:
                _not_for_approval(row, actor)
            assert state is not None
            rejected = decide_deny(state, actor, self._approvers(row), now, comment)
            _append(tx, "access.denied", row, now, {
                "code": "denied_by_approver",
                "denied_by": rejected.denied_by,
                "comment": rejected.comment,
                "rule": row.rule,
                "mode": row.mode,
            })  # fmt: skip
            approval_store.record_decision(tx.conn, request_id, actor.username, rejected.comment)
            _set(tx, request_id, "DENIED", "denied_by_approver", now, actor.username)

        commit_work(self._engine, work)
        return self.view(request_id)

    def cancel(self, identity: Identity, request_id: str) -> AccessRequestView:
        def work(tx: Transaction) -> None:
            row, now = self._row(tx, request_id), self._clock.now()
            state = approval_store.load_pending(tx.conn, request_id)
            if state is None:
                if row.username != identity.username:
                    raise NotRequester("only the requester may cancel a pending request")
                raise NotPending(f"the request is not waiting for approval (it is {row.status})")
            cancelled = decide_cancel(state, self._actor(identity), now)
            _append(tx, "access.cancelled", row, now, {"cancelled_by": cancelled.by})
            approval_store.record_decision(tx.conn, request_id, cancelled.by, None)
            _set(tx, request_id, "CANCELLED", "cancelled", now, cancelled.by)

        commit_work(self._engine, work)
        return self.view(request_id)

    def review(
        self, identity: Identity, request_id: str, verdict: str, comment: str
    ) -> AccessRequestView:
        def work(tx: Transaction) -> None:
            row, now = self._row(tx, request_id), self._clock.now()
            state = approval_store.load_emergency(tx.conn, request_id) or EmergencyState(
                request_id, row.username, emergency=False, review_due=None
            )
            reviewed = decide_review(
                state, self._actor(identity), self._approvers(row), now, verdict, comment
            )
            _append(tx, "access.reviewed", row, now, {
                "reviewer": reviewed.reviewer,
                "verdict": reviewed.verdict,
                "comment": reviewed.comment,
                "late": reviewed.late,
                "rule": row.rule,
            })  # fmt: skip
            approval_store.record_review(tx.conn, request_id, reviewed)
            access_requests.set_status(
                tx, request_id, last_modified=rfc3339(now), last_modified_by=reviewed.reviewer
            )

        commit_work(self._engine, work)
        return self.view(request_id)

    # -- reads ----------------------------------------------------------------------------

    def receipt_for(self, request_id: str) -> dict[str, Any] | None:
        """The receipt of the request's `access.granted` record (what a grant's 201 carried;
        the requester of an approved request fetches it with GET …/{id})."""
        with read_only(self._engine) as conn:
            records = audit_store.records_for_request(conn, request_id)
        granted = [r for r in records if r["type"] == "access.granted"]
        if not granted:
            return None
        return self._signer.receipt(granted[-1]["seq"], granted[-1]["hash"])

    def pending_for(
        self, identity: Identity, *, limit: int, offset: int
    ) -> list[AccessRequestView]:
        """Pending requests the caller may approve (never their own)."""
        rules = self._gate.policy.rules_approved_by(Subject(identity.username, identity.groups))
        with read_only(self._engine) as conn:
            ids = approval_store.pending_under(
                conn,
                rules,
                not_requested_by=identity.username,
                now=self._clock.now(),
                limit=limit,
                offset=offset,
            )
        return self._views(ids)

    def reviews_for(
        self, identity: Identity, *, overdue: bool, limit: int, offset: int
    ) -> list[AccessRequestView]:
        """Unreviewed break-glass grants the caller may review (approver of the rule, or
        admin; never their own); `overdue`: only those past their deadline."""
        rules: list[str] | None = None
        if "admin" not in self._gate.roles(identity):
            subject = Subject(identity.username, identity.groups)
            rules = self._gate.policy.rules_approved_by(subject)
        with read_only(self._engine) as conn:
            ids = approval_store.reviews_under(
                conn,
                rules,
                not_requested_by=identity.username,
                overdue_at=self._clock.now() if overdue else None,
                limit=limit,
                offset=offset,
            )
        return self._views(ids)

    def view(self, request_id: str, *, receipt: dict[str, Any] | None = None) -> AccessRequestView:
        views = self._views([request_id], receipt=receipt)
        if not views:
            raise NotFound("no such access request")
        return views[0]

    def _views(
        self, ids: list[str], *, receipt: dict[str, Any] | None = None
    ) -> list[AccessRequestView]:
        with read_only(self._engine) as conn:
            rows = [access_requests.find(conn, i) for i in ids]
            extras = approval_store.view_extras(conn, ids)
        return [view(r, receipt=receipt, extras=extras.get(r["id"])) for r in rows if r is not None]

    # -- helpers --------------------------------------------------------------------------

    def _grant(
        self,
        tx: Transaction,
        row: Any,
        now: datetime,
        approvers: list[str],
        by: str,
        started: list[Any],
    ) -> dict[str, Any] | None:
        """The last approval: re-check the policy as it is now, then the ordinary grant."""
        asked = approval_store.load_asked(tx.conn, row.id) or {}
        requester, request = restore(row, asked)
        try:
            grant = self._gate.decide(requester, request, row.login)
        except (Denied, PolicyRejected) as refusal:
            _append(tx, "access.denied", row, now, {
                "code": refusal.code,
                "denied_by": "policy",
                "recheck": True,
                "rule": row.rule,
                "mode": row.mode,
                "approvers": approvers,
            })  # fmt: skip
            _set(tx, row.id, "DENIED", refusal.code, now, by)
            return None
        facts = Asked(requester, request, row.login, row.id)
        if row.mode == "push":
            if self._push is None:
                raise NotPending("push mode is no longer configured on this server")
            started.extend(self._push.start_approved(tx, facts, asked, grant, now, approvers))
            return None
        public_key = parse_public_key((asked.get("public_keys") or [""])[0])
        records, record = self._certificate.grant_in(
            tx, facts, public_key, grant, now, {"approvers": approvers}
        )
        values = {k: v for k, v in records.row.items() if k not in ("id", "created")}
        access_requests.set_status(
            tx, row.id, **{**values, "last_modified": rfc3339(now), "last_modified_by": by}
        )
        return record

    def _row(self, tx: Transaction, request_id: str) -> Any:
        found = access_requests.find(tx, request_id)
        if found is None:
            raise NotFound("no such access request")
        return _Row(found)

    def _actor(self, identity: Identity) -> Actor:
        admin = "admin" in self._gate.roles(identity)
        return Actor(identity.username, tuple(identity.groups), admin)

    def _approvers(self, row: Any) -> ApproverCheck | None:
        rule = self._gate.policy.rule_named(row.rule) if row.rule else None
        if rule is None or rule.approval is None:
            return None
        return ApproverCheck.of(rule.approval)

    def _needed(self, row: Any) -> int:
        rule = self._gate.policy.rule_named(row.rule)
        assert rule is not None and rule.approval is not None
        return rule.approval.count


class _Row:
    """A row mapping read as attributes."""

    def __init__(self, mapping: Any) -> None:
        self._m = mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self._m[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def _not_for_approval(row: Any, actor: Actor) -> None:
    """A request that never waited for approvers: nobody approves it (contract order)."""
    if row.username == actor.username:
        raise SelfApproval("you cannot approve or deny your own request")
    raise NotAnApprover("this request does not wait for approval")


def _append(
    tx: Transaction, record_type: str, row: Any, now: datetime, details: dict[str, Any]
) -> dict[str, Any]:
    event = AuditEvent(
        type=record_type,
        username=row.username,
        login=row.login,
        hostname=row.hostname,
        request_id=row.id,
        reason=row.reason,
        details=details,
    )
    return tx.append(event, now)


def _set(tx: Transaction, request_id: str, status: str, why: str, now: datetime, by: str) -> None:
    access_requests.set_status(
        tx,
        request_id,
        status=status,
        status_reason=why,
        last_modified=rfc3339(now),
        last_modified_by=by,
    )
