"""The console's per-app state and the request-level helpers its routes share.

`Console` holds what the pages need besides the API's components: the session store, the
OIDC client, the renderer, the chain check. `session_for` is the console's authentication,
with the API's rate limits: failed authentications per client address (an unknown or
expired session cookie counts), then requests per username.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.requests import Request

from even.api.console.approval_info import ApprovalPort, approves_anything
from even.api.console.csrf import Refused, origin_of
from even.api.console.oidc import OidcClient
from even.api.console.render import Renderer
from even.api.console.sessions import ConsoleSession, SessionStore
from even.api.problems import status_for
from even.config import Settings
from even.errors import EvenError, RateLimited
from even.service.audit_views import ChainCheck
from even.wiring import Components

SESSION_COOKIE = "__Host-even-session"
SIGNIN_COOKIE = "__Host-even-signin"
SIGNIN_PATH = "/console/login"
AUDITOR, ADMIN = "auditor", "admin"


@dataclass
class Console:
    settings: Settings
    components: Components
    sessions: SessionStore
    oidc: OidcClient
    renderer: Renderer
    chain: ChainCheck
    approvals: ApprovalPort  # components.approvals (SPEC §11)

    @property
    def own_origin(self) -> str:
        return origin_of(self.settings.base_url)

    def roles(self, session: ConsoleSession) -> list[str]:
        return self.components.access.roles(session.identity)

    def is_approver(self, session: ConsoleSession) -> bool:
        return approves_anything(self.components.access.policy, session.identity)

    def page(
        self,
        request: Request,
        template: str,
        session: ConsoleSession | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        roles = self.roles(session) if session is not None else []
        approver = session is not None and self.is_approver(session)
        return self.renderer.page(
            template,
            status,
            session=session,
            roles=roles,
            is_auditor=AUDITOR in roles,
            is_admin=ADMIN in roles,
            is_approver=approver,
            path=request.url.path,
            **context,
        )

    def error(
        self, request: Request, session: ConsoleSession | None, status: int, message: str
    ) -> HTMLResponse:
        response = self.page(
            request, "error.html", session, status, http_status=status, message=message
        )
        if status == 429:
            response.headers["Retry-After"] = "1"
        return response

    def domain_error(
        self, request: Request, session: ConsoleSession | None, exc: EvenError
    ) -> HTMLResponse:
        response = self.error(request, session, status_for(exc), exc.message)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def session_for(request: Request, console: Console) -> ConsoleSession | None:
    """The request's session, or None (no cookie, or one that is unknown or has ended).

    Raises RateLimited as the API's authentication does.
    """
    limits = console.components.rate_limits
    address = client_address(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        return None
    wait = limits.failed_auth.retry_after(address)
    if wait:
        raise RateLimited("too many failed sign-ins from this address", wait)
    session = await run_in_threadpool(console.sessions.lookup, cookie)
    if session is None:
        limits.failed_auth.hit(address)
        return None
    wait = limits.per_user.hit(session.identity.username)
    if wait:
        raise RateLimited("too many requests for this user", wait)
    return session


def to_sign_in() -> Response:
    response = RedirectResponse(SIGNIN_PATH, status_code=303)
    # An ended or unknown session cookie is of no further use; drop it.
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


def set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    """`__Host-` cookies: Secure, Path=/, no Domain; HttpOnly and SameSite=Lax as well.

    Secure on loopback too: browsers treat http://127.0.0.1 as a secure context and keep
    such a cookie there, so one set of flags serves tests and production alike.
    """
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax"
    )


def refused(
    console: Console, request: Request, session: ConsoleSession | None, exc: Refused
) -> HTMLResponse:
    return console.error(request, session, exc.status, exc.message)
