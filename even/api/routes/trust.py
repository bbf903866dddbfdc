"""What hosts pull (SPEC §6): the CA keys to trust and the KRL, both with ETags."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from even.api.deps import ComponentsDep
from even.api.responses import problems

router = APIRouter(tags=["trust"])


class KrlResponse(Response):
    media_type = "application/octet-stream"


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest() + '"'


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return etag in [tag.strip() for tag in wanted.split(",")] or wanted.strip() == "*"


@router.get(
    "/v1/ca",
    response_class=PlainTextResponse,
    responses={**problems(503), 304: {"description": "Not modified (ETag)"}},
)
async def ca_keys(request: Request, components: ComponentsDep) -> Response:
    """One OpenSSH public key per line, ready for sshd's TrustedUserCAKeys."""
    body = (await run_in_threadpool(components.ca_registry.published_lines)).encode()
    etag = _etag(body)
    if _not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return PlainTextResponse(body, headers={"ETag": etag})


@router.get(
    "/v1/krl",
    response_class=KrlResponse,
    responses={**problems(503), 304: {"description": "Not modified (ETag)"}},
)
async def krl(request: Request, components: ComponentsDep) -> Response:
    """An OpenSSH KRL of revoked serials (until valid_before + 10 min); the generation grows."""
    # Known current (no I/O): answered on the event loop; else a thread reads the counter.
    document = components.revocation.fresh_krl()
    if document is None:
        document = await run_in_threadpool(components.revocation.krl)
    if _not_modified(request, document.etag):
        return Response(status_code=304, headers={"ETag": document.etag})
    return KrlResponse(document.body, headers={"ETag": document.etag})
