"""API shapes for approvals and break-glass (SPEC §7, §11): request bodies and answer objects.

Comments follow the same hygiene as an access request's `reason`: 1–1,024 code points, not
only whitespace; NUL and lone surrogates are refused (422); other control and bidi characters
are stored as sent and shown escaped by readers. Unknown fields are refused.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from even.api.schemas import (
    MAX_REASON,
    AccessGrantAnswer,
    AccessRequestItem,
    ApprovalEntry,
    ApprovalObject,
    _reject_unsafe_text,
)

__all__ = [
    "AccessAnswer",
    "ApprovalEntry",
    "ApprovalObject",
    "ApproveBody",
    "DenyBody",
    "ReviewBody",
]


def _comment(value: str) -> str:
    _reject_unsafe_text(value, "comment", allow_controls=True)
    if not value.strip():
        raise ValueError("comment: must not be only whitespace")
    return value


Comment = Annotated[str, Field(min_length=1, max_length=MAX_REASON), AfterValidator(_comment)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ApproveBody(_Body):
    comment: Comment | None = None


class DenyBody(_Body):
    comment: Comment


class ReviewBody(_Body):
    verdict: Literal["justified", "unjustified"]
    comment: Comment


class AccessAnswer(AccessGrantAnswer):
    """The 201/202 answer: a grant's fields, `approval` while (or after) approvers were
    involved, and `emergency` (both are fields of AccessGrantAnswer itself)."""


class ApprovalItem(AccessRequestItem):
    """One entry of `GET /v1/approvals`: a pending request the caller may approve."""

    approval: ApprovalObject


class ReviewItem(BaseModel):
    """One entry of `GET /v1/reviews`: a break-glass grant and its review."""

    id: str
    username: str
    login: str
    hostname: str
    reason: str
    rule: str | None
    valid_after: str | None
    valid_before: str | None
    review_due: str
    overdue: bool
    reviewed_at: str | None
    reviewed_by: str | None
    verdict: Literal["justified", "unjustified"] | None
    comment: str | None


class ApprovalList(BaseModel):
    items: list[ApprovalItem]
    next: int | None


class ReviewList(BaseModel):
    items: list[ReviewItem]
    next: int | None
