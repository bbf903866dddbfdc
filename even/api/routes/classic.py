"""The classic Even API (SPEC §7): `POST /access-requests`, `GET /access-requests`.

What existing Even clients speak: the original request body and field names, a `200
text/plain` "Access to host H for user U was granted." followed by the ssh command. Underneath
it is a push-mode grant with the caller's registered keys (`even.service.classic`); errors
are the same problem+json answers as /v1 (502 `push_failed` when a host fails).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from even.api.body import read_json
from even.api.deps import ComponentsDep, IdentityDep
from even.api.responses import problems
from even.api.schemas import MAX_REASON, AccessGrantAnswer, AccessRequestBody
from even.errors import ApprovalRequired
from even.service.classic import ClassicRequest

router = APIRouter(tags=["classic"])

# Names as the original clients send them: a bastion's name or host, a hostname, a login.
_NAME = r"^[a-z0-9][a-z0-9._-]{0,252}$"
_LOGIN = r"^[a-z_][a-z0-9_.-]{0,31}$"


class ClassicRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    hostname: str = Field(min_length=1, max_length=253, pattern=_NAME)
    reason: str = Field(min_length=1, max_length=MAX_REASON, pattern=r"\S")
    username: str | None = Field(default=None, max_length=32, pattern=_LOGIN)
    remote_host: str | None = Field(default=None, max_length=253, pattern=_NAME)
    lifetime_minutes: int | None = Field(default=None, ge=1, le=24 * 60)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        # The same rules as /v1: NUL and lone surrogates refused, not only whitespace.
        return AccessRequestBody._reason(value)

    def to_request(self) -> ClassicRequest:
        return ClassicRequest(
            hostname=self.hostname,
            reason=self.reason,
            username=self.username,
            remote_host=self.remote_host,
            lifetime_minutes=self.lifetime_minutes,
        )


class ClassicItem(BaseModel):
    id: str
    username: str
    hostname: str
    remote_host: str | None
    reason: str
    status: str
    status_reason: str | None
    lifetime_minutes: int
    created: str
    created_by: str
    last_modified: str
    last_modified_by: str


@router.post(
    "/access-requests",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Granted; the ssh command follows"},
        **problems(400, 401, 403, 413, 415, 422, 429, 502, 503),
        403: {
            "content": {"text/plain": {}, "application/problem+json": {}},
            "description": "Refused; `approval_required` (text/plain) when the host's rule "
            "needs approvers, whom the classic client cannot wait for",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ClassicRequestBody.model_json_schema()}},
        }
    },
)
async def classic_request_access(
    request: Request, components: ComponentsDep, identity: IdentityDep
) -> PlainTextResponse:
    body = await read_json(request, ClassicRequestBody)
    try:
        view = await run_in_threadpool(
            components.classic.request_access, identity, body.to_request()
        )
    except ApprovalRequired as exc:
        # The original client prints the body it gets and cannot wait: say it plainly.
        text = f"Access refused (approval_required): {exc.message}\n"
        return PlainTextResponse(text, status_code=403, headers={"X-Even-Code": exc.code})
    answer = AccessGrantAnswer.from_view(view)
    text = f"Access to host {view.hostname} for user {view.login} was granted.\n"
    if answer.ssh_command:
        text += answer.ssh_command + "\n"
    return PlainTextResponse(text)


@router.get(
    "/access-requests",
    response_model=list[ClassicItem],
    responses=problems(401, 422, 429, 503),
)
def classic_list_access_requests(
    components: ComponentsDep,
    identity: IdentityDep,
    status: Annotated[str | None, Query(max_length=16, pattern=r"^[A-Z_]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[dict[str, Any]]:
    return components.classic.list_requests(identity, status=status, limit=limit, offset=offset)
