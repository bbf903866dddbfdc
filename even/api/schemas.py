"""API request and response models (separate from tables and from domain values)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# even.names' patterns shape the OpenAPI document (clients, fuzzers); its functions decide.
from even.names import BASTION_PATTERN, HOSTNAME_PATTERN, LOGIN_PATTERN
from even.service.models import AccessRequestInput, AccessRequestView

MAX_REASON = 1024


_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")


def _reject_unsafe_text(value: str, field: str, *, allow_controls: bool) -> str:
    if "\x00" in value:
        raise ValueError(f"{field}: NUL is not allowed")
    if _SURROGATE_RE.search(value):
        raise ValueError(f"{field}: lone surrogates are not allowed")
    if not allow_controls and _CONTROL_RE.search(value):
        raise ValueError(f"{field}: control characters are not allowed")
    return value


def check_reason(value: str) -> str:
    """A grant's or a revoke's reason: no NUL or lone surrogate, not only whitespace. Other
    control and bidi characters are kept verbatim (shown escaped by readers)."""
    _reject_unsafe_text(value, "reason", allow_controls=True)
    if not value.strip():
        raise ValueError("reason: must not be only whitespace")
    return value


class AccessRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    hostname: str = Field(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)
    reason: str = Field(min_length=1, max_length=MAX_REASON, pattern=r"\S")
    login: str | None = Field(default=None, max_length=32, pattern=LOGIN_PATTERN)
    username: str | None = Field(
        default=None, max_length=32, pattern=LOGIN_PATTERN, description="deprecated: login"
    )
    bastion: str | None = Field(default=None, max_length=64, pattern=BASTION_PATTERN)
    lifetime_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    mode: Literal["certificate", "push"] = "certificate"
    public_key: str | None = Field(default=None, max_length=16 * 1024)
    emergency: bool = Field(default=False, description="break-glass: grant now, review later")

    @field_validator("hostname", "login", "username", "bastion", "public_key")
    @classmethod
    def _no_controls(cls, value: str | None) -> str | None:
        return None if value is None else _reject_unsafe_text(value, "field", allow_controls=False)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return check_reason(value)

    @model_validator(mode="after")
    def _login_alias(self) -> AccessRequestBody:
        if self.username is not None and self.login is not None and self.username != self.login:
            raise ValueError("login and its deprecated alias username differ")
        return self

    def to_input(self) -> AccessRequestInput:
        return AccessRequestInput(
            hostname=self.hostname,
            reason=self.reason,
            login=self.login if self.login is not None else self.username,
            bastion=self.bastion,
            lifetime_minutes=self.lifetime_minutes,
            mode=self.mode,
            public_key=self.public_key,
            emergency=self.emergency,
        )


class ApprovalEntry(BaseModel):
    username: str
    time: str
    comment: str | None


class ApprovalObject(BaseModel):
    """`approval`: how many approvals are needed, who gave one, who may, and until when."""

    needed: int
    approvals: list[ApprovalEntry]
    approver_groups: list[str]
    expires_at: str


class Receipt(BaseModel):
    seq: int
    hash: str
    signature: str
    key_id: str


class AccessGrantAnswer(BaseModel):
    id: str
    status: str
    username: str
    login: str
    hostname: str
    mode: str
    certificate: str | None
    serial: int | None
    key_id: str | None
    principals: list[str]
    valid_after: str | None
    valid_before: str | None
    bastion: str | None
    bastion_certificate: str | None
    bastion_serial: int | None
    ssh_command: str | None
    receipt: Receipt | None
    # SPEC §11: for a request that waits (or waited) for approvers; break-glass grants.
    approval: ApprovalObject | None = None
    emergency: bool = False

    @classmethod
    def from_view(cls, view: AccessRequestView) -> AccessGrantAnswer:
        return cls(
            **_plain_answer_fields(view),
            receipt=Receipt(**view.receipt) if view.receipt else None,
            approval=ApprovalObject.model_validate(view.approval) if view.approval else None,
            emergency=view.emergency,
        )


# The answer's members copied from the view as they are, in AccessGrantAnswer's field order
# (derived, so a field added to the model is not silently left out of `grant_document`).
_BUILT_MEMBERS = {"ssh_command", "receipt", "approval", "emergency"}
_PLAIN_ANSWER_FIELDS = tuple(n for n in AccessGrantAnswer.model_fields if n not in _BUILT_MEMBERS)
_RECEIPT_FIELDS = tuple(Receipt.model_fields)


def _plain_answer_fields(view: AccessRequestView) -> dict[str, Any]:
    fields = {name: getattr(view, name) for name in _PLAIN_ANSWER_FIELDS}
    fields["principals"] = list(view.principals)
    fields["ssh_command"] = _ssh_command(view)
    return fields


def _ssh_command(view: AccessRequestView) -> str | None:
    if view.status != "GRANTED":
        return None
    if view.bastion:
        return f"ssh -J {view.username}@{view.bastion} {view.login}@{view.hostname}"
    return f"ssh {view.login}@{view.hostname}"


def grant_document(view: AccessRequestView) -> dict[str, Any]:
    """`AccessGrantAnswer.from_view(view).model_dump()`, built directly for the common answer.

    Every grant's answer is serialised here; building and validating the model from values
    our own code made, then dumping it again, cost ~15 µs of the grant. A request with an
    `approval` object (rare) still goes through the models. tests/even/test_grant_document.py
    holds the two equal.
    """
    if view.approval:
        return AccessGrantAnswer.from_view(view).model_dump()
    receipt = view.receipt
    document = _plain_answer_fields(view)
    document["receipt"] = {key: receipt[key] for key in _RECEIPT_FIELDS} if receipt else None
    document["approval"] = None
    document["emergency"] = view.emergency
    return document


class AccessRequestItem(BaseModel):
    id: str
    status: str
    username: str
    login: str
    hostname: str
    mode: str
    reason: str
    rule: str | None
    serial: int | None
    key_id: str | None
    principals: list[str]
    valid_after: str | None
    valid_before: str | None
    bastion: str | None
    bastion_serial: int | None
    lifetime_minutes: int
    status_reason: str | None
    created: str
    last_modified: str
    certificate: str | None = None
    approval: ApprovalObject | None = None
    emergency: bool = False
    # A break-glass grant's review (SPEC §11); null until due / reviewed.
    review_due: str | None = None
    reviewed_at: str | None = None
    reviewed_by: str | None = None
    verdict: str | None = None
    review_comment: str | None = None

    @classmethod
    def from_view(
        cls, view: AccessRequestView, *, with_certificate: bool = False
    ) -> AccessRequestItem:
        data: dict[str, Any] = {
            k: getattr(view, k) for k in _ITEM_FIELDS if k not in ("certificate", "approval")
        }
        approval = ApprovalObject.model_validate(view.approval) if view.approval else None
        return cls(
            **data,
            certificate=view.certificate if with_certificate else None,
            approval=approval,
        )


class AccessRequestDetail(AccessRequestItem):
    """`GET /v1/access-requests/{id}`: the item, and to the requester alone (once granted)
    the credentials: certificates, receipt, ssh command."""

    bastion_certificate: str | None = None
    ssh_command: str | None = None
    receipt: Receipt | None = None

    @classmethod
    def for_caller(cls, view: AccessRequestView, *, requester: bool) -> AccessRequestDetail:
        item = AccessRequestItem.from_view(view, with_certificate=requester)
        if not requester:
            return cls(**item.model_dump())
        grant = AccessGrantAnswer.from_view(view)
        return cls(
            **item.model_dump(),
            bastion_certificate=view.bastion_certificate,
            ssh_command=grant.ssh_command,
            receipt=grant.receipt,
        )


_ITEM_FIELDS = tuple(AccessRequestItem.model_fields)


class AccessRequestList(BaseModel):
    items: list[AccessRequestItem]
    next: int | None


class AllowedRule(BaseModel):
    rule: str
    hosts: list[str]
    logins: list[str]
    modes: list[str]
    max_lifetime_minutes: int
    bastion: str | None


class WhoAmI(BaseModel):
    username: str
    groups: list[str]
    roles: list[str]
    issuer: str
    allowed: list[AllowedRule]


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str
