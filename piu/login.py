"""`piu login` / `piu logout` and the cached token behind every other command.

The flows, with the outside world passed in (HTTP transport, sleep, clock) so tests drive
them without waiting: discovery → device authorization → the CLI shows the code → polling →
cache. A cached token is used while it has more than `tokencache.EXPIRY_SKEW` seconds left;
after that the refresh token (if any) is tried once, under a lock; if that fails the user is
told to log in again (exit 3). A cache from another issuer than the configured one is not
used: its token would be refused anyway, and the user should know why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from piu import tokencache
from piu.errors import NotLoggedIn, TokenExpired
from piu.tokencache import CachedLogin, jwt_claims

if TYPE_CHECKING:
    import httpx

    from piu.config import Settings
    from piu.oidc import DeviceCode, TokenSet
    from piu.paths import Paths

NOT_LOGGED_IN = "not logged in: run `piu login`"
EXPIRED = "not logged in (token expired): run `piu login`"
OTHER_SOURCES = "or set PIU_TOKEN, or pass --token-command CMD"


@dataclass(frozen=True)
class World:
    """What the flows need from outside; the CLI passes the real one, tests their own."""

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] | None = None
    clock: Callable[[], float] = time.time


def request_params(settings: Settings) -> dict[str, str]:
    """Extra parameters of the device and token requests: which API the token is for."""
    params: dict[str, str] = {}
    if settings.resource:
        params["resource"] = settings.resource  # RFC 8707
    audience = settings.explicit("audience")
    if audience:
        params["audience"] = audience  # the non-standard parameter some IdPs (Auth0) want
    return params


def device_login(
    settings: Settings, paths: Paths, world: World, show: Callable[[DeviceCode], None]
) -> CachedLogin:
    from piu.oidc import OidcClient

    issuer = settings.require_issuer()
    client_id = settings.client_id or "piu"
    params = request_params(settings)
    with OidcClient(
        issuer, client_id, transport=world.transport, sleep=world.sleep, clock=world.clock
    ) as oidc:
        endpoints = oidc.discover()
        device_params = dict(params)
        if settings.scope:
            device_params["scope"] = settings.scope
        device = oidc.start_device(endpoints.device_authorization, device_params)
        show(device)
        tokens = oidc.poll(endpoints.token, device, params)
    login = CachedLogin(
        issuer=issuer,
        client_id=client_id,
        access_token=tokens.access_token,
        token_endpoint=endpoints.token,
        revocation_endpoint=endpoints.revocation,
        resource=settings.resource,
        expires_at=_expires_at(tokens),
        refresh_token=tokens.refresh_token,
        username=_username(tokens),
    )
    tokencache.save(paths.token_file, login)
    return login


def cached_token(settings: Settings, paths: Paths, world: World) -> str:
    """The cached access token, refreshed if needed; NotLoggedIn/TokenExpired otherwise."""
    login = _usable_cache(settings, paths)
    if not login.expired(world.clock()):
        return login.access_token
    if login.refresh_token is None:
        raise TokenExpired(EXPIRED, hint=OTHER_SOURCES)
    with tokencache.locked(paths.token_file):
        login = _usable_cache(settings, paths)  # another piu may have refreshed meanwhile
        if not login.expired(world.clock()):
            return login.access_token
        return _refresh(login, paths, world).access_token


def logout(paths: Paths, world: World) -> tuple[bool, bool]:
    """Delete the cache; revoke its refresh token where possible. (had a login, revoked)."""
    from piu.oidc import OidcClient

    try:
        login = tokencache.load(paths.token_file)
    except NotLoggedIn:
        login = None  # unreadable: still delete it
    revoked = False
    if login is not None and login.refresh_token and login.revocation_endpoint:
        with OidcClient(login.issuer, login.client_id, transport=world.transport) as oidc:
            revoked = oidc.revoke(login.revocation_endpoint, login.refresh_token, "refresh_token")
    return tokencache.delete(paths.token_file), revoked


def status(settings: Settings, paths: Paths, now: float) -> str:
    """One line about the cached login for `piu config show`, without the token."""
    try:
        login = tokencache.load(paths.token_file)
    except NotLoggedIn as exc:
        return str(exc)
    if login is None:
        return "not logged in"
    who = login.username or "unknown user"
    if login.expires_at is None:
        until = "expiry unknown"
    else:
        until = ("expired " if login.expired(now) else "valid until ") + _utc(login.expires_at)
    refresh = ", refreshable" if login.refresh_token else ""
    other = "" if settings.issuer in (None, login.issuer) else " (not the configured issuer)"
    return f"logged in as {who} at {login.issuer}{other}, {until}{refresh}"


def _usable_cache(settings: Settings, paths: Paths) -> CachedLogin:
    login = tokencache.load(paths.token_file)
    if login is None:
        raise NotLoggedIn(NOT_LOGGED_IN, hint=OTHER_SOURCES)
    if settings.issuer and settings.issuer.rstrip("/") != login.issuer.rstrip("/"):
        raise NotLoggedIn(
            f"not logged in at {settings.issuer} (the cached login is for {login.issuer}):"
            " run `piu login`"
        )
    return login


def _refresh(login: CachedLogin, paths: Paths, world: World) -> CachedLogin:
    from piu.oidc import OidcClient

    if login.refresh_token is None:
        raise TokenExpired(EXPIRED, hint=OTHER_SOURCES)
    params = {"resource": login.resource} if login.resource else {}
    with OidcClient(
        login.issuer, login.client_id, transport=world.transport, clock=world.clock
    ) as oidc:
        tokens = oidc.refresh(login.token_endpoint, login.refresh_token, params)
    fresh = replace(
        login,
        access_token=tokens.access_token,
        expires_at=_expires_at(tokens),
        # Issuers that rotate refresh tokens send a new one; the others keep the old valid.
        refresh_token=tokens.refresh_token or login.refresh_token,
        username=_username(tokens) or login.username,
    )
    tokencache.save(paths.token_file, fresh)
    return fresh


def _expires_at(tokens: TokenSet) -> int | None:
    if tokens.expires_in is not None:
        return int(tokens.obtained_at) + tokens.expires_in
    exp = jwt_claims(tokens.access_token).get("exp")
    return exp if isinstance(exp, int) else None


def _username(tokens: TokenSet) -> str | None:
    for token in (tokens.access_token, tokens.id_token):
        name = jwt_claims(token).get("preferred_username") if token else None
        if isinstance(name, str) and name.isprintable():
            return name
    return None


def _utc(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
