"""Approvals and break-glass reviews over HTTP (SPEC §7, §11).

`POST /v1/access-requests/{id}/approve {comment?}`, `…/deny {comment}`, `…/cancel` (no body),
`…/review {verdict, comment}` answer the request as it is afterwards (never a certificate: the
requester fetches that with `GET /v1/access-requests/{id}`). `GET /v1/approvals` lists the
pending requests the caller may approve, `GET /v1/reviews[?overdue=true]` the break-glass
grants they may review. The use cases are `even.service.approvals.ApprovalService`; errors
map through `even.api.problems` (403 self_approval / not_an_approver, 409 not_pending /
already_approved, in that order).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from even.api.approval_schemas import (
    ApprovalItem,
    ApprovalList,
    ApproveBody,
    DenyBody,
    ReviewBody,
    ReviewItem,
    ReviewList,
)
from even.api.body import read_json
from even.api.deps import ComponentsDep, IdentityDep
from even.api.responses import problems
from even.api.schemas import AccessRequestItem
from even.service.models import AccessRequestView

router = APIRouter(tags=["approvals"])

_DECISION_ERRORS = problems(400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503)


def _body_doc(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


@router.post(
    "/v1/access-requests/{request_id}/approve",
    response_model=AccessRequestItem,
    responses=_DECISION_ERRORS,
    openapi_extra=_body_doc(ApproveBody, required=False),
)
async def approve(
    request_id: str, request: Request, components: ComponentsDep, identity: IdentityDep
) -> AccessRequestItem:
    """An approver of the request's rule (never the requester) approves; the approval that
    reaches the rule's count grants at that moment."""
    body = await read_json(request, ApproveBody, allow_empty=True)
    view = await run_in_threadpool(
        components.approvals.approve, identity, request_id[:64], body.comment
    )
    return AccessRequestItem.from_view(view)


@router.post(
    "/v1/access-requests/{request_id}/deny",
    response_model=AccessRequestItem,
    responses=_DECISION_ERRORS,
    openapi_extra=_body_doc(DenyBody),
)
async def deny(
    request_id: str, request: Request, components: ComponentsDep, identity: IdentityDep
) -> AccessRequestItem:
    """An approver ends a pending request: DENIED, `access.denied` with `denied_by`."""
    body = await read_json(request, DenyBody)
    view = await run_in_threadpool(
        components.approvals.deny, identity, request_id[:64], body.comment
    )
    return AccessRequestItem.from_view(view)


@router.post(
    "/v1/access-requests/{request_id}/cancel",
    response_model=AccessRequestItem,
    responses=_DECISION_ERRORS,
)
async def cancel(
    request_id: str, components: ComponentsDep, identity: IdentityDep
) -> AccessRequestItem:
    """The requester withdraws a pending request: CANCELLED."""
    view = await run_in_threadpool(components.approvals.cancel, identity, request_id[:64])
    return AccessRequestItem.from_view(view)


@router.post(
    "/v1/access-requests/{request_id}/review",
    response_model=AccessRequestItem,
    responses=_DECISION_ERRORS,
    openapi_extra=_body_doc(ReviewBody),
)
async def review(
    request_id: str, request: Request, components: ComponentsDep, identity: IdentityDep
) -> AccessRequestItem:
    """An approver of the rule or an admin (never the requester) reviews a break-glass grant."""
    body = await read_json(request, ReviewBody)
    view = await run_in_threadpool(
        components.approvals.review, identity, request_id[:64], body.verdict, body.comment
    )
    return AccessRequestItem.from_view(view)


Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10**9)]


@router.get("/v1/approvals", response_model=ApprovalList, responses=problems(401, 422, 429, 503))
async def approvals(
    components: ComponentsDep, identity: IdentityDep, limit: Limit = 50, offset: Offset = 0
) -> ApprovalList:
    """Pending requests the caller may approve (never their own)."""
    views = await run_in_threadpool(
        lambda: components.approvals.pending_for(identity, limit=limit + 1, offset=offset)
    )
    items = [ApprovalItem.from_view(v) for v in views[:limit]]
    return ApprovalList(items=items, next=offset + limit if len(views) > limit else None)


@router.get("/v1/reviews", response_model=ReviewList, responses=problems(401, 422, 429, 503))
async def reviews(
    components: ComponentsDep,
    identity: IdentityDep,
    overdue: bool = False,
    limit: Limit = 50,
    offset: Offset = 0,
) -> ReviewList:
    """Break-glass grants awaiting review that the caller may review (an approver of the
    rule, or an admin; never their own); `overdue=true`: only those past their deadline."""
    views = await run_in_threadpool(
        lambda: components.approvals.reviews_for(
            identity, overdue=overdue, limit=limit + 1, offset=offset
        )
    )
    now = components.clock.now()
    items = [_review_item(v, now.strftime("%Y-%m-%dT%H:%M:%SZ")) for v in views[:limit]]
    return ReviewList(items=items, next=offset + limit if len(views) > limit else None)


def _review_item(view: AccessRequestView, now: str) -> ReviewItem:
    due = view.review_due or ""
    verdict = view.verdict if view.verdict in ("justified", "unjustified") else None
    return ReviewItem(
        id=view.id,
        username=view.username,
        login=view.login,
        hostname=view.hostname,
        reason=view.reason,
        rule=view.rule,
        valid_after=view.valid_after,
        valid_before=view.valid_before,
        review_due=due,
        overdue=bool(due) and due <= now and view.reviewed_at is None,
        reviewed_at=view.reviewed_at,
        reviewed_by=view.reviewed_by,
        verdict=verdict,
        comment=view.review_comment,
    )
