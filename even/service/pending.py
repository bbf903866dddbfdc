"""A request that waits for approvers, and a break-glass grant's review (SPEC §11): what
either writes into the unit of work that records it, shared by both grant modes.

- `needs_approval`: the deciding rule has `approval:` and break-glass was not asked for.
- `record_pending`: `access.pending` and the PENDING_APPROVAL row, with everything the grant
  at the last approval needs back (`asked`: the requester's groups, issuer and dev-issuer flag
  as the token said, the lifetime and bastion asked for, the key or keys). Nothing is signed
  or pushed; the policy is checked again at the last approval, against these same facts.
- `restore`: those facts as the identity and request the ordinary grant path takes.
- `open_review`: the review a break-glass grant is due, written with its `access.granted`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from audit.chain import AuditEvent
from even.approvals import PENDING_APPROVAL, pending_expires_at, review_due_at
from even.clock import rfc3339
from even.identity import Identity
from even.policy import Grant
from even.service.admission import Asked
from even.service.models import AccessRequestInput
from even.store import access_requests, approval_store
from even.store.unit_of_work import Transaction


def needs_approval(grant: Grant, request: AccessRequestInput) -> bool:
    return grant.rule.approval is not None and not request.emergency


def record_pending(
    tx: Transaction,
    asked: Asked,
    grant: Grant,
    *,
    fingerprint: str,
    public_keys: list[str],
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Write the pending request; returns (row, the `approval` object, `access.pending`)."""
    rule = grant.rule
    approval = rule.approval
    assert approval is not None
    request = asked.request
    expires_at = pending_expires_at(now, approval)
    groups = list(approval.approvers.groups)
    record = tx.append(
        AuditEvent(
            type="access.pending",
            **asked.event_fields(),
            details={
                "rule": rule.name,
                "mode": request.mode,
                "fingerprint": fingerprint,
                "lifetime_minutes": grant.lifetime_minutes,
                "needed": approval.count,
                "approver_groups": groups,
                "approver_users": list(approval.approvers.users),
                "expires_at": rfc3339(expires_at),
            },
        ),
        now,
    )
    stamp = rfc3339(now)
    row = access_requests.row(
        id=asked.request_id,
        status=PENDING_APPROVAL,
        username=asked.identity.username,
        login=asked.login,
        hostname=request.hostname,
        mode=request.mode,
        reason=request.reason,
        rule=rule.name,
        bastion=rule.bastion,
        lifetime_minutes=grant.lifetime_minutes,
        fingerprint=fingerprint,
        principals="[]",
        created=stamp,
        last_modified=stamp,
    )
    access_requests.insert(tx, row)
    tx.flush()
    identity = asked.identity
    approval_store.open_pending(
        tx.conn,
        request_id=asked.request_id,
        rule=rule.name,
        needed=approval.count,
        approver_groups=groups,
        expires_at=expires_at,
        asked={
            "groups": list(identity.groups),
            "issuer": identity.issuer,
            "subject": identity.subject,
            "dev_issuer": identity.dev_issuer,
            "lifetime_minutes": request.lifetime_minutes,
            "bastion": request.bastion,
            "public_keys": public_keys,
        },
    )
    approval_object = {
        "needed": approval.count,
        "approvals": [],
        "approver_groups": groups,
        "expires_at": rfc3339(expires_at),
    }
    return row, approval_object, record


def restore(row: Any, asked: dict[str, Any]) -> tuple[Identity, AccessRequestInput]:
    """The requester and their request as they were when it was made."""
    identity = Identity(
        username=row.username,
        groups=tuple(asked.get("groups", ())),
        issuer=str(asked.get("issuer", "")),
        subject=str(asked.get("subject", "")),
        dev_issuer=bool(asked.get("dev_issuer", False)),
    )
    keys = asked.get("public_keys") or []
    request = AccessRequestInput(
        hostname=row.hostname,
        reason=row.reason,
        login=row.login,
        bastion=asked.get("bastion"),
        lifetime_minutes=asked.get("lifetime_minutes"),
        mode="push" if row.mode == "push" else "certificate",
        public_key=keys[0] if len(keys) == 1 else None,
    )
    return identity, request


def open_review(tx: Transaction, asked: Asked, grant: Grant, now: datetime) -> None:
    """A break-glass grant: its review is due within the rule's `review_within_hours`."""
    emergency = grant.rule.emergency
    assert emergency is not None
    tx.flush()
    approval_store.open_emergency(
        tx.conn,
        request_id=asked.request_id,
        rule=grant.rule.name,
        review_due=review_due_at(now, emergency),
    )
