"""A rule's `approval:` and `emergency:` sections (SPEC §11): their shapes, load-time checks,
the questions the service asks of them, and the warnings `even policy check` prints.

Pure: no I/O, no clock. Invariants:
- `approval.count ≥ 1` and the approvers name at least one user or group, so a rule that needs
  approval can never be satisfied by nobody at all (the empty set would be a silent "no").
- The requester is never an approver of their own request, whatever the lists say
  (`is_approver` answers False for them), so each approval is a second person.
- Break-glass lifetime never exceeds the rule's own maximum: `emergency.max_lifetime_minutes`
  larger than it is refused at load, and when absent it is the rule's maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from even.names import is_login

if TYPE_CHECKING:
    from even.policy import Rule

MAX_APPROVAL_COUNT = 10
MAX_PENDING_MINUTES = 7 * 24 * 60
MAX_REVIEW_HOURS = 30 * 24


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Approvers(_Strict):
    groups: list[str] = []
    users: list[str] = []

    @field_validator("users")
    @classmethod
    def _usernames(cls, value: list[str]) -> list[str]:
        for name in value:
            if not is_login(name):
                raise ValueError(f"approver {name!r} is not a valid username")
        return value

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        for group in value:
            if not group or not group.isprintable() or len(group) > 255:
                raise ValueError(f"approver group {group!r} is not a valid group name")
        return value


class ApprovalRule(_Strict):
    approvers: Approvers
    count: int = Field(default=1, ge=1, le=MAX_APPROVAL_COUNT)
    pending_minutes: int = Field(default=60, ge=1, le=MAX_PENDING_MINUTES)

    @model_validator(mode="after")
    def _someone_approves(self) -> ApprovalRule:
        if not self.approvers.users and not self.approvers.groups:
            raise ValueError("approval.approvers needs at least one user or group")
        return self


class EmergencyRule(_Strict):
    allowed: bool = False
    # None: the rule's own maximum lifetime.
    max_lifetime_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    review_within_hours: int = Field(default=24, ge=1, le=MAX_REVIEW_HOURS)


@dataclass(frozen=True)
class ApproverCheck:
    """Who may approve a request under a rule: `approvers` minus the requester."""

    users: frozenset[str]
    groups: frozenset[str]

    @classmethod
    def of(cls, approval: ApprovalRule) -> ApproverCheck:
        return cls(frozenset(approval.approvers.users), frozenset(approval.approvers.groups))

    def is_listed(self, username: str, groups: tuple[str, ...] | frozenset[str]) -> bool:
        """Named by username or by one of its groups (the requester question is separate)."""
        return username in self.users or bool(self.groups & set(groups))

    def is_approver(
        self, username: str, groups: tuple[str, ...] | frozenset[str], *, requester: str
    ) -> bool:
        """May `username` approve a request by `requester`? Never their own."""
        return username != requester and self.is_listed(username, groups)


def emergency_max_lifetime(rule: Rule, rule_max: int) -> int:
    """The break-glass cap under `rule`, whose ordinary maximum is `rule_max` minutes."""
    if rule.emergency is None or rule.emergency.max_lifetime_minutes is None:
        return rule_max
    return min(rule.emergency.max_lifetime_minutes, rule_max)


def check_rule(rule: Rule, rule_max: int) -> list[str]:
    """Load-time problems of one rule's approval/emergency sections (empty: fine)."""
    problems = []
    cap = None if rule.emergency is None else rule.emergency.max_lifetime_minutes
    if cap is not None and cap > rule_max:
        problems.append(
            f"policy rule {rule.name}: emergency.max_lifetime_minutes ({cap}) "
            f"exceeds the rule's maximum ({rule_max})"
        )
    return problems


def approval_warnings(rule: Rule) -> list[str]:
    """Rules whose approvers may be too few once the requester is left out.

    Group membership lives in the IdP, so this reasons only about what the file says:
    - only users are listed and fewer than `count` of them: nobody can ever complete it;
    - only users are listed and a subject user is one of them: that user's own requests have
      one approver fewer, and may fall below `count`;
    - every approver group is a subject group and every approver user a subject user: the
      approvers are the requesters' peers (fine when intended, and said so it is noticed).
    """
    approval = rule.approval
    if approval is None:
        return []
    listed = set(approval.approvers.users)
    groups = set(approval.approvers.groups)
    warnings = []
    prefix = f"rule {rule.name}: "
    if not groups and len(listed) < approval.count:
        warnings.append(
            prefix + f"needs {approval.count} approvals but lists only {len(listed)} "
            "approver(s) and no group: no request can ever be approved"
        )
    elif not groups:
        short = sorted(
            user for user in listed & set(rule.subjects.users) if len(listed) - 1 < approval.count
        )
        for user in short:
            warnings.append(
                prefix + f"{user} is both a subject and an approver; without them only "
                f"{len(listed) - 1} approver(s) remain for their requests, fewer than "
                f"count {approval.count}: their requests can never be approved"
            )
    if (
        groups <= set(rule.subjects.groups)
        and listed <= set(rule.subjects.users)
        and (groups or listed)
    ):
        warnings.append(
            prefix + "every approver may also request under this rule; requesters never "
            "approve themselves, so each request needs approval from another of them"
        )
    return warnings
