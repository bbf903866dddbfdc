"""The dev issuer's discovery document and JWKS (no minting endpoint, by design)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from even.api.deps import ComponentsDep
from even.errors import NotFound

router = APIRouter(prefix="/dev-issuer", tags=["dev-issuer"], include_in_schema=False)


@router.get("/.well-known/openid-configuration")
def discovery(components: ComponentsDep) -> dict[str, Any]:
    if components.dev_issuer is None:
        raise NotFound("the development issuer is not enabled")
    return components.dev_issuer.discovery()


@router.get("/jwks")
def jwks(components: ComponentsDep) -> dict[str, Any]:
    if components.dev_issuer is None:
        raise NotFound("the development issuer is not enabled")
    return components.dev_issuer.jwks()
