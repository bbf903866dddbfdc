"""`/v1/access-requests`: request access, read one, list."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit.chain import canonical
from even.api.body import read_json
from even.api.deps import ComponentsDep, IdentityDep
from even.api.responses import problems
from even.api.schemas import (
    MAX_REASON,
    AccessGrantAnswer,
    AccessRequestBody,
    AccessRequestDetail,
    AccessRequestItem,
    AccessRequestList,
    check_reason,
    grant_document,
)
from even.approvals import PENDING_APPROVAL
from even.identity import Identity
from even.service.idempotency import IdempotencyKey
from even.service.models import ListFilters
from even.wiring import Components

router = APIRouter(prefix="/v1/access-requests", tags=["access"])

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": AccessRequestBody.model_json_schema()}},
    }
}


@router.post(
    "",
    status_code=201,
    response_model=AccessGrantAnswer,
    responses={
        202: {
            "model": AccessGrantAnswer,
            "description": "PENDING_APPROVAL: the rule needs approvers; no credential yet, "
            "the `approval` object says who and until when (poll GET …/{id})",
        },
        **problems(400, 401, 403, 409, 413, 415, 422, 429, 502, 503),
    },
    openapi_extra=_BODY_DOC,
)
async def request_access(
    request: Request,
    components: ComponentsDep,
    identity: IdentityDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Retry safely: same key + same body → the first answer",
        ),
    ] = None,
) -> Response:
    # Without an Idempotency-Key this route is answered by even.api.grant_lane instead.
    body = await read_json(request, AccessRequestBody)
    status, answer = await grant_answer(components, identity, body, idempotency_key)
    return Response(answer, status_code=status, media_type="application/json")


async def grant_answer(
    components: Components,
    identity: Identity,
    body: AccessRequestBody,
    idempotency_key: str | None,
) -> tuple[int, bytes]:
    """Request access; the status (201 granted, 202 waiting for approvers) and the answer's
    JSON (serialised once with orjson: the hot path)."""
    idempotency = None
    if idempotency_key is not None:
        digest = hashlib.sha256(canonical(body.model_dump())).hexdigest()
        idempotency = IdempotencyKey(key=idempotency_key, body_sha256=digest)
    view = await components.access.request_access_async(identity, body.to_input(), idempotency)
    status = 202 if view.status == PENDING_APPROVAL else 201
    return status, orjson.dumps(grant_document(view))


@router.get(
    "",
    response_model=AccessRequestList,
    responses=problems(401, 422, 429, 503),
)
def list_access_requests(
    components: ComponentsDep,
    identity: IdentityDep,
    status: Annotated[str | None, Query(max_length=16, pattern=r"^[A-Z_]+$")] = None,
    hostname: Annotated[str | None, Query(max_length=253)] = None,
    username: Annotated[str | None, Query(max_length=32)] = None,
    login: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> AccessRequestList:
    filters = ListFilters(
        status=status, hostname=hostname, username=username, login=login, limit=limit, offset=offset
    )
    views, next_offset = components.access.list_requests(identity, filters)
    return AccessRequestList(
        items=[AccessRequestItem.from_view(v) for v in views], next=next_offset
    )


@router.get(
    "/{request_id}",
    response_model=AccessRequestDetail,
    responses=problems(401, 404, 422, 429, 503),
)
def get_access_request(
    request_id: str, components: ComponentsDep, identity: IdentityDep
) -> AccessRequestDetail:
    """Requester, auditors and admins. Only the requester gets the credentials (and, once
    granted, the receipt): auditors and admins see the request, never the certificate."""
    view = components.access.get(identity, request_id[:64])
    requester = view.username == identity.username
    if requester and view.status == "GRANTED":
        view = replace(view, receipt=components.approvals.receipt_for(view.id))
    return AccessRequestDetail.for_caller(view, requester=requester)


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str | None = Field(default=None, min_length=1, max_length=MAX_REASON)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str | None) -> str | None:
        # The same rules as a grant's reason: it lands in the audit record beside it.
        return None if value is None else check_reason(value)


@router.post(
    "/{request_id}/revoke",
    response_model=AccessRequestItem,
    responses=problems(400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": RevokeBody.model_json_schema()}},
        }
    },
)
async def revoke_access_request(
    request_id: str, request: Request, components: ComponentsDep, identity: IdentityDep
) -> AccessRequestItem:
    """End a grant: its serials enter the KRL; status REVOKED (requester or admin)."""
    body = await read_json(request, RevokeBody, allow_empty=True)
    await run_in_threadpool(components.revocation.revoke, identity, request_id[:64], body.reason)
    view = await run_in_threadpool(components.access.get, identity, request_id[:64])
    return AccessRequestItem.from_view(view)
