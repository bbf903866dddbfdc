"""Dependencies shared by the routes: the components and the caller's verified identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from even.errors import InvalidToken, RateLimited
from even.identity import Identity
from even.logs import note_username
from even.wiring import Components


async def get_components(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


async def current_identity(
    request: Request, components: Annotated[Components, Depends(get_components)]
) -> Identity:
    """The bearer token's identity; anything else is 401 with WWW-Authenticate."""
    return await authenticate(components, request)


async def authenticate(components: Components, request: Request) -> Identity:
    """Verify the request's bearer token, with the per-address and per-user rate limits;
    raises InvalidToken or RateLimited."""
    # The socket peer, or the proxy's X-Forwarded-For only when uvicorn was told to trust it.
    client_ip = request.client.host if request.client else "unknown"
    authorization = request.headers.get("authorization", "")
    limits = components.rate_limits
    wait = limits.failed_auth.retry_after(client_ip)
    if wait:
        raise RateLimited("too many failed authentications from this address", wait)
    scheme, _, token = authorization.partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("a bearer token is required")
        token = token.strip()
        # A token seen before answers from the cache on the event loop; a new one may need
        # the issuer's JWKS (network I/O), so it is verified on a worker thread.
        cached = components.verifier.cached(token)
        if cached is not None:
            identity = cached
        else:
            identity = await run_in_threadpool(components.verifier.verify, token)
    except InvalidToken:
        limits.failed_auth.hit(client_ip)
        raise
    note_username(identity.username)  # for the request's log lines (even.logs)
    wait = limits.per_user.hit(identity.username)
    if wait:
        raise RateLimited("too many requests for this user", wait)
    return identity


ComponentsDep = Annotated[Components, Depends(get_components)]
IdentityDep = Annotated[Identity, Depends(current_identity)]
