"""`/v1/access-requests`: request access, read one, list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from even.api.body import read_json
from even.api.deps import ComponentsDep, IdentityDep
from even.api.responses import problems
from even.api.schemas import (
    AccessGrantAnswer,
    AccessRequestBody,
    AccessRequestItem,
    AccessRequestList,
)
from even.service.models import ListFilters

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
    responses=problems(400, 401, 403, 413, 415, 422, 429, 503),
    openapi_extra=_BODY_DOC,
)
async def request_access(
    request: Request, components: ComponentsDep, identity: IdentityDep
) -> AccessGrantAnswer:
    body = await read_json(request, AccessRequestBody)
    view = await run_in_threadpool(components.access.request_access, identity, body.to_input())
    return AccessGrantAnswer.from_view(view)


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
    response_model=AccessRequestItem,
    responses=problems(401, 404, 429, 503),
)
def get_access_request(
    request_id: str, components: ComponentsDep, identity: IdentityDep
) -> AccessRequestItem:
    view = components.access.get(identity, request_id[:64])
    return AccessRequestItem.from_view(view, with_certificate=view.username == identity.username)
