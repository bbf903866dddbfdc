"""`GET/PUT /v1/users/me/keys`: the caller's public keys for push mode and classic grants.

PUT replaces the whole set (send `{"keys": []}` to remove every key) and is audited
(`keys.updated`); each key is one OpenSSH public key line without options (SPEC §7).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator

from even.api.body import read_json
from even.api.deps import ComponentsDep, IdentityDep
from even.api.responses import problems
from even.service.user_keys import MAX_KEYS

router = APIRouter(prefix="/v1/users/me/keys", tags=["keys"])


class KeysBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    keys: list[str] = Field(max_length=MAX_KEYS)

    @field_validator("keys")
    @classmethod
    def _lines(cls, value: list[str]) -> list[str]:
        for line in value:
            if len(line) > 16 * 1024 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in line):
                raise ValueError("each key is one line of at most 16 KiB, no control characters")
        return value


class KeysAnswer(BaseModel):
    keys: list[str]


@router.get("", response_model=KeysAnswer, responses=problems(401, 429, 503))
def get_keys(components: ComponentsDep, identity: IdentityDep) -> KeysAnswer:
    return KeysAnswer(keys=components.keys.list_keys(identity))


@router.put(
    "",
    response_model=KeysAnswer,
    responses=problems(400, 401, 413, 415, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": KeysBody.model_json_schema()}},
        }
    },
)
async def put_keys(
    request: Request, components: ComponentsDep, identity: IdentityDep
) -> KeysAnswer:
    """Replace the caller's keys; answers them as stored (`TYPE BASE64`, comments dropped)."""
    body = await read_json(request, KeysBody)
    stored = await run_in_threadpool(components.keys.replace, identity, body.keys)
    return KeysAnswer(keys=stored)
