"""Plain values passed between the API and the use cases (no FastAPI, no SQL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["certificate", "push"]


@dataclass(frozen=True)
class AccessRequestInput:
    hostname: str
    reason: str
    login: str | None = None
    bastion: str | None = None
    lifetime_minutes: int | None = None
    mode: Mode = "certificate"
    public_key: str | None = None
    emergency: bool = False  # break-glass (SPEC §11): grant now, review later
    # False for clients that cannot wait for approvers (the classic API): a rule that needs
    # approval then refuses with `approval_required` instead of answering 202.
    can_wait: bool = True


@dataclass(frozen=True)
class AccessRequestView:
    """An access request as the API shows it (SPEC §7 answer fields)."""

    id: str
    status: str
    username: str
    login: str
    hostname: str
    mode: str
    reason: str
    rule: str | None
    certificate: str | None
    serial: int | None
    key_id: str | None
    principals: list[str]
    valid_after: str | None
    valid_before: str | None
    bastion: str | None
    bastion_certificate: str | None
    bastion_serial: int | None
    lifetime_minutes: int
    status_reason: str | None
    created: str
    last_modified: str
    receipt: dict[str, Any] | None = None
    # Approvals (SPEC §11): `{needed, approvals, approver_groups, expires_at}` for a request
    # that waited (or waits) for approvers; None for any other.
    approval: dict[str, Any] | None = None
    # Break-glass: the grant and its review (None until reviewed).
    emergency: bool = False
    review_due: str | None = None
    reviewed_at: str | None = None
    reviewed_by: str | None = None
    verdict: str | None = None
    review_comment: str | None = None


@dataclass(frozen=True)
class ListFilters:
    status: str | None = None
    hostname: str | None = None
    username: str | None = None
    login: str | None = None
    limit: int = 50
    offset: int = 0
