"""Signing in and out of the console.

GET /console/login        a page with a "Sign in" link (works without JavaScript)
GET /console/login/start  a fresh state, nonce and PKCE verifier; 303 to the issuer
GET /console/callback     the issuer sends the browser back here with code and state
POST /console/logout      ends the session (CSRF-checked like every POST)

The callback trusts nothing it is given: the state must be one this browser started (its
sign-in cookie), unused and recent; the code is redeemed with the PKCE verifier; the ID token's
nonce must match; and the access token must pass Even's own verifier, exactly as a bearer
token on the API would. Only then is a session created.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.requests import Request

from even.api.console.csrf import Refused, checked_form
from even.api.console.sessions import LOGIN_MINUTES
from even.api.console.web import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    client_address,
    console_of,
    refused,
    session_for,
    set_cookie,
    to_sign_in,
)
from even.errors import EvenError, InvalidToken, RateLimited

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/login")
async def sign_in_page(request: Request) -> Response:
    console = console_of(request)
    try:
        session = await session_for(request, console)
    except RateLimited as exc:
        return console.domain_error(request, None, exc)
    if session is not None:
        return RedirectResponse("/console/requests", status_code=303)
    return console.page(request, "login.html", None, issuer=console.oidc.issuer)


@router.get("/login/start")
async def start_sign_in(request: Request) -> Response:
    console = console_of(request)
    # Unauthenticated and it writes a row: held to the per-address limit of failed sign-ins.
    failed_auth = console.components.rate_limits.failed_auth
    address = client_address(request)
    wait = failed_auth.retry_after(address) or failed_auth.hit(address)
    if wait:
        return console.domain_error(request, None, RateLimited("too many sign-ins", wait))
    try:
        start = await run_in_threadpool(console.oidc.start)
        browser = await run_in_threadpool(
            console.sessions.begin_login, start.state, start.nonce, start.code_verifier
        )
    except EvenError as exc:
        return console.domain_error(request, None, exc)
    response = RedirectResponse(start.url, status_code=303)
    set_cookie(response, SIGNIN_COOKIE, browser, LOGIN_MINUTES * 60)
    return response


@router.get("/callback")
async def callback(request: Request) -> Response:
    console = console_of(request)
    limits = console.components.rate_limits
    address = client_address(request)
    wait = limits.failed_auth.retry_after(address)
    if wait:
        return console.domain_error(request, None, RateLimited("too many failed sign-ins", wait))
    params = request.query_params
    state, code = params.get("state"), params.get("code")
    try:
        if params.get("error"):
            raise InvalidToken("the identity provider did not sign you in")
        if not state or not code or len(state) > 200 or len(code) > 2000:
            raise InvalidToken("the sign-in answer is incomplete")
        pending = await run_in_threadpool(
            console.sessions.finish_login, state, request.cookies.get(SIGNIN_COOKIE)
        )
        if pending is None:
            raise InvalidToken("this sign-in was not started here, was used, or took too long")
        token = await run_in_threadpool(
            console.oidc.redeem, code, code_verifier=pending.code_verifier, nonce=pending.nonce
        )
        # The same verifier, audience and identity rules as every API request.
        identity, expires = await run_in_threadpool(console.components.verifier.verify_until, token)
        if identity.issuer != console.oidc.issuer:
            raise InvalidToken("the token comes from another issuer than the console's")
        if expires <= console.components.clock.now().timestamp():
            raise InvalidToken("the token has already expired")
        session_id = await run_in_threadpool(console.sessions.create, identity, expires)
    except InvalidToken as exc:
        limits.failed_auth.hit(address)
        return console.error(request, None, 401, f"Sign-in failed: {exc.message}")
    except EvenError as exc:
        return console.domain_error(request, None, exc)
    response = RedirectResponse("/console/requests", status_code=303)
    lifetime = int(expires - console.components.clock.now().timestamp())
    set_cookie(response, SESSION_COOKIE, session_id, max(1, lifetime))
    response.delete_cookie(SIGNIN_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@router.post("/logout")
async def sign_out(request: Request) -> Response:
    console = console_of(request)
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        await checked_form(request, session, console.own_origin)
    except Refused as exc:
        return refused(console, request, None, exc)
    except RateLimited as exc:
        return console.domain_error(request, None, exc)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    await run_in_threadpool(console.sessions.end, cookie)
    response = console.page(request, "signed_out.html", None)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response
