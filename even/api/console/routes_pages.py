"""My requests (with the request form) and active grants, on the API's own use cases.

- The form offers what `GET /v1/whoami` calls `allowed` (AccessService.allowed), and posts
  through the same `AccessRequestBody` validation and `AccessService.request_access_async`
  as `POST /v1/access-requests`: the same policy decision, audit records and answer.
- A request that needs approvers answers 202 with its page (who must approve, until when, a
  cancel button); `emergency` (break-glass) is offered only where a rule allows it for the
  user, and the service decides again either way.
- Revoking calls RevocationService.revoke, as `POST /v1/access-requests/{id}/revoke` does:
  the requester, or an admin.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.requests import Request

from even.api.console.approval_info import rule_facts
from even.api.console.csrf import Refused, checked_form
from even.api.console.routes_detail import detail_context
from even.api.console.sessions import ConsoleSession
from even.api.console.web import ADMIN, Console, console_of, refused, session_for, to_sign_in
from even.api.problems import status_for
from even.api.schemas import AccessRequestBody
from even.errors import EvenError
from even.service.models import ListFilters

router = APIRouter(prefix="/console", include_in_schema=False)
STATUSES = (
    "PENDING_APPROVAL",
    "PUSHING",
    "GRANTED",
    "DENIED",
    "CANCELLED",
    "FAILED",
    "EXPIRED",
    "REVOKED",
)
PAGE_SIZE = 50


@router.get("")
@router.get("/")
async def home() -> Response:
    return RedirectResponse("/console/requests", status_code=303)


def _requests_context(
    console: Console, session: ConsoleSession, status: str | None
) -> dict[str, Any]:
    identity = session.identity
    filters = ListFilters(status=status, username=identity.username, limit=PAGE_SIZE)
    items, _ = console.components.access.list_requests(identity, filters)
    facts = rule_facts(console.components.access.policy, identity)
    return {
        "allowed": console.components.access.allowed(identity),
        "facts": facts,
        "emergency_offered": any(fact.emergency for fact in facts.values()),
        "items": items,
        "status_filter": status,
        "statuses": STATUSES,
    }


@router.get("/requests")
async def my_requests(request: Request) -> Response:
    console = console_of(request)
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        status = request.query_params.get("status") or None
        if status is not None and status not in STATUSES:
            raise Refused(422, "unknown status filter")
        context = await run_in_threadpool(_requests_context, console, session, status)
    except Refused as exc:
        return refused(console, request, None, exc)
    except EvenError as exc:
        return console.domain_error(request, None, exc)
    return console.page(request, "requests.html", session, form={}, form_error=None, **context)


def _body_from_form(form: dict[str, str]) -> AccessRequestBody:
    """The console form as the API's request body (same schema, same validation)."""
    data: dict[str, Any] = {
        "hostname": form.get("hostname", "").strip(),
        "reason": form.get("reason", ""),
        "mode": form.get("mode") or "certificate",
    }
    for name in ("login", "bastion"):
        if form.get(name, "").strip():
            data[name] = form[name].strip()
    if form.get("public_key", "").strip():
        data["public_key"] = form["public_key"].strip()
    if form.get("emergency"):
        if form["emergency"] != "yes":
            raise Refused(422, "emergency: a checkbox")
        data["emergency"] = True
    lifetime = form.get("lifetime_minutes", "").strip()
    if lifetime:
        if not lifetime.isdigit() or len(lifetime) > 6:
            raise Refused(422, "lifetime: a whole number of minutes")
        data["lifetime_minutes"] = int(lifetime)
    try:
        return AccessRequestBody.model_validate(data)
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")})
        raise Refused(422, "please check: " + ", ".join(fields or ["the form"])) from exc


@router.post("/requests")
async def submit_request(request: Request) -> Response:
    console = console_of(request)
    session = None
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        form = await checked_form(request, session, console.own_origin)
    except Refused as exc:
        return refused(console, request, session, exc)
    except EvenError as exc:
        return console.domain_error(request, session, exc)
    try:
        body = _body_from_form(form)
        view = await console.components.access.request_access_async(
            session.identity, body.to_input(), None
        )
    except (Refused, EvenError) as exc:
        status = exc.status if isinstance(exc, Refused) else status_for(exc)
        context = await run_in_threadpool(_requests_context, console, session, None)
        return console.page(
            request,
            "requests.html",
            session,
            status,
            form=form,
            form_error=exc.message,
            **context,
        )
    context = await run_in_threadpool(detail_context, console, session, view, view.id)
    status = 202 if view.status == "PENDING_APPROVAL" else 201
    return console.page(
        request, "request_detail.html", session, status, fresh=True, done=None, **context
    )


def _grants_context(console: Console, session: ConsoleSession) -> dict[str, Any]:
    identity = session.identity
    is_admin = ADMIN in console.roles(session)
    filters = ListFilters(
        status="GRANTED", username=None if is_admin else identity.username, limit=500
    )
    items, more = console.components.access.list_requests(identity, filters)
    return {"items": items, "more": more is not None, "all_users": is_admin}


@router.get("/grants")
async def grants(request: Request) -> Response:
    console = console_of(request)
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        context = await run_in_threadpool(_grants_context, console, session)
    except EvenError as exc:
        return console.domain_error(request, None, exc)
    revoked = request.query_params.get("revoked")
    return console.page(
        request, "grants.html", session, revoked=revoked[:64] if revoked else None, **context
    )


@router.post("/grants/{request_id}/revoke")
async def revoke(request_id: str, request: Request) -> Response:
    console = console_of(request)
    session = None
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        form = await checked_form(request, session, console.own_origin)
        reason = form.get("reason", "").strip() or None
        if reason is not None and len(reason) > 1024:
            raise Refused(422, "the reason is longer than 1,024 characters")
        await run_in_threadpool(
            console.components.revocation.revoke, session.identity, request_id[:64], reason
        )
    except Refused as exc:
        return refused(console, request, session, exc)
    except EvenError as exc:
        return console.domain_error(request, session, exc)
    # Post/redirect/get: a reload does not post again.
    return RedirectResponse(f"/console/grants?revoked={request_id[:64]}", status_code=303)
