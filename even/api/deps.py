"""Dependencies shared by the routes: the components and the caller's verified identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from even.errors import InvalidToken
from even.identity import Identity
from even.wiring import Components


def get_components(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


def current_identity(
    request: Request, components: Annotated[Components, Depends(get_components)]
) -> Identity:
    """The bearer token's identity; anything else is 401 with WWW-Authenticate."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("a bearer token is required")
    return components.verifier.verify(token.strip())


ComponentsDep = Annotated[Components, Depends(get_components)]
IdentityDep = Annotated[Identity, Depends(current_identity)]
