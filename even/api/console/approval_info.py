"""What the console shows of approvals and break-glass: the approval service as the console
calls it, a request's approval progress, and the policy's approval facts for one user.

- `ApprovalPort` is the approval service (`components.approvals`, even.service.approvals) as
  the pages call it: structural, so they depend on these methods and nothing else.
- `progress_of(view)` reads a request's `approval` object and review state into one plain
  value for the templates; a request without them (an ordinary grant) has `needed == 0`.
- `RuleFacts` come from the loaded policy, never from the form: whether a rule needs
  approvers (and which groups), and whether it allows break-glass for this user. They only
  decide what the form offers; the service decides again on every request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from even.identity import Identity
from even.policy import Policy, Subject
from even.service.models import AccessRequestView


class ApprovalPort(Protocol):
    def approve(
        self, identity: Identity, request_id: str, comment: str | None
    ) -> AccessRequestView: ...

    def deny(self, identity: Identity, request_id: str, comment: str) -> AccessRequestView: ...

    def cancel(self, identity: Identity, request_id: str) -> AccessRequestView: ...

    def review(
        self, identity: Identity, request_id: str, verdict: str, comment: str
    ) -> AccessRequestView: ...

    def pending_for(
        self, identity: Identity, *, limit: int, offset: int
    ) -> list[AccessRequestView]: ...

    def reviews_for(
        self, identity: Identity, *, overdue: bool, limit: int, offset: int
    ) -> list[AccessRequestView]: ...


@dataclass(frozen=True)
class Given:
    """One approval: who, when (RFC 3339), and what they said."""

    username: str
    time: str
    comment: str | None


@dataclass(frozen=True)
class Progress:
    needed: int = 0
    approvals: list[Given] = field(default_factory=list)
    approver_groups: list[str] = field(default_factory=list)
    expires_at: str | None = None
    emergency: bool = False
    review_due: str | None = None
    reviewed_by: str | None = None
    verdict: str | None = None
    review_comment: str | None = None

    @property
    def missing(self) -> int:
        return max(self.needed - len(self.approvals), 0)

    def approved_by(self, username: str) -> bool:
        return any(given.username == username for given in self.approvals)


def progress_of(view: AccessRequestView) -> Progress:
    approval = view.approval or {}
    givens = [
        Given(str(a["username"]), str(a["time"]), a.get("comment"))
        for a in approval.get("approvals", [])
    ]
    return Progress(
        needed=int(approval.get("needed", 0)),
        approvals=givens,
        approver_groups=[str(g) for g in approval.get("approver_groups", [])],
        expires_at=approval.get("expires_at"),
        emergency=view.emergency,
        review_due=view.review_due,
        reviewed_by=view.reviewed_by,
        verdict=view.verdict,
        review_comment=view.review_comment,
    )


@dataclass(frozen=True)
class RuleFacts:
    name: str
    approval_count: int  # 0: granted at once
    approver_groups: list[str]
    approver_users: list[str]
    emergency: bool
    emergency_max_minutes: int | None


def rule_facts(policy: Policy, identity: Identity) -> dict[str, RuleFacts]:
    """Approval facts of every rule `identity` may request under, by rule name."""
    subject = Subject(identity.username, identity.groups)
    facts = {}
    for rule in policy.rules_for(subject):
        approval = rule.approval
        facts[rule.name] = RuleFacts(
            name=rule.name,
            approval_count=0 if approval is None else approval.count,
            approver_groups=[] if approval is None else list(approval.approvers.groups),
            approver_users=[] if approval is None else list(approval.approvers.users),
            emergency=rule.emergency_allowed,
            emergency_max_minutes=(
                policy.emergency_max_lifetime(rule) if rule.emergency_allowed else None
            ),
        )
    return facts


def approves_anything(policy: Policy, identity: Identity) -> bool:
    """Is `identity` named as an approver by some rule (so the approvals pages concern them)?"""
    return bool(policy.rules_approved_by(Subject(identity.username, identity.groups)))
