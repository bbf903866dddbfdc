"""Pending approvals and break-glass reviews, on the approval service the API uses.

- The lists are `ApprovalService.pending_for` / `reviews_for`: the requests the caller may
  decide (never their own), exactly as `GET /v1/approvals` and `GET /v1/reviews` answer.
- Approve, deny and review post through the API's own body models (`ApproveBody`,
  `DenyBody`, `ReviewBody`: the same comment rules) and the same service calls, so the rules,
  the error order (self_approval, not_an_approver, not_pending, already_approved) and the
  audit records are the API's. Each POST passes the console's origin and CSRF checks first.
- Post/redirect/get: a decision redirects to its list with a notice; a reload never decides
  twice (and a second decision would get `not_pending` / `already_approved` anyway).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from even.api.approval_schemas import ApproveBody, DenyBody, ReviewBody
from even.api.console.approval_info import progress_of
from even.api.console.csrf import Refused, checked_form
from even.api.console.web import Console, console_of, refused, session_for, to_sign_in
from even.clock import rfc3339
from even.errors import EvenError
from even.identity import Identity

router = APIRouter(prefix="/console", include_in_schema=False)
PAGE_SIZE = 50
MAX_OFFSET = 100_000
ID_LENGTH = 64
NOTICES = {
    "approved": "Approved",
    "granted": "Approved; that was the last approval needed, so access is now granted:",
    "denied": "Denied",
    "reviewed": "Reviewed",
}


def _offset(request: Request) -> int:
    text = request.query_params.get("offset", "0")
    if not text.isdigit() or int(text) > MAX_OFFSET:
        raise Refused(422, "offset: a whole number up to 100,000")
    return int(text)


def _notice(request: Request) -> dict[str, Any]:
    done, which = request.query_params.get("done"), request.query_params.get("id", "")
    if done not in NOTICES:
        return {"notice": None, "notice_id": None}
    return {"notice": NOTICES[done], "notice_id": which[:ID_LENGTH]}


def _parsed(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")})
        raise Refused(422, "please check: " + ", ".join(fields or ["the form"])) from exc


def _comment(form: dict[str, str]) -> str | None:
    text = form.get("comment", "")
    return text if text.strip() else None


def _pending_context(console: Console, identity: Identity, offset: int) -> dict[str, Any]:
    service = console.approvals
    items = service.pending_for(identity, limit=PAGE_SIZE + 1, offset=offset)
    shown = items[:PAGE_SIZE]
    return {
        "items": [(item, progress_of(item)) for item in shown],
        "next_offset": offset + PAGE_SIZE if len(items) > PAGE_SIZE else None,
    }


@router.get("/approvals")
async def pending(request: Request) -> Response:
    console = console_of(request)
    session = None
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        context = await run_in_threadpool(
            _pending_context, console, session.identity, _offset(request)
        )
    except Refused as exc:
        return refused(console, request, session, exc)
    except EvenError as exc:
        return console.domain_error(request, session, exc)
    return console.page(request, "approvals.html", session, **context, **_notice(request))


async def _decide(request: Request, request_id: str, verb: str) -> Response:
    """Approve or deny `request_id` with the form's comment, then back to the list."""
    console = console_of(request)
    session = None
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        form = await checked_form(request, session, console.own_origin)
        service = console.approvals
        request_id = request_id[:ID_LENGTH]
        if verb == "approve":
            body = _parsed(ApproveBody, {"comment": _comment(form)})
            view = await run_in_threadpool(
                service.approve, session.identity, request_id, body.comment
            )
            done = "granted" if view.status == "GRANTED" else "approved"
        else:
            if _comment(form) is None:
                raise Refused(422, "a comment is required to deny a request")
            body = _parsed(DenyBody, {"comment": form.get("comment", "")})
            await run_in_threadpool(service.deny, session.identity, request_id, body.comment)
            done = "denied"
    except Refused as exc:
        return refused(console, request, session, exc)
    except EvenError as exc:
        return console.domain_error(request, session, exc)
    query = urlencode({"done": done, "id": request_id})
    return RedirectResponse(f"/console/approvals?{query}", status_code=303)


@router.post("/approvals/{request_id}/approve")
async def approve(request_id: str, request: Request) -> Response:
    return await _decide(request, request_id, "approve")


@router.post("/approvals/{request_id}/deny")
async def deny(request_id: str, request: Request) -> Response:
    return await _decide(request, request_id, "deny")


def _reviews_context(
    console: Console, identity: Identity, overdue: bool, offset: int
) -> dict[str, Any]:
    service = console.approvals
    items = service.reviews_for(identity, overdue=overdue, limit=PAGE_SIZE + 1, offset=offset)
    return {
        "items": [(item, progress_of(item)) for item in items[:PAGE_SIZE]],
        "next_offset": offset + PAGE_SIZE if len(items) > PAGE_SIZE else None,
        "overdue": overdue,
        # Both RFC 3339 UTC with `Z` (even.clock.rfc3339): they compare as text.
        "now": rfc3339(console.components.clock.now()),
    }


@router.get("/reviews")
async def reviews(request: Request) -> Response:
    console = console_of(request)
    session = None
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        flag = request.query_params.get("overdue", "false")
        if flag not in ("true", "false"):
            raise Refused(422, "overdue: true or false")
        context = await run_in_threadpool(
            _reviews_context, console, session.identity, flag == "true", _offset(request)
        )
    except Refused as exc:
        return refused(console, request, session, exc)
    except EvenError as exc:
        return console.domain_error(request, session, exc)
    return console.page(request, "reviews.html", session, **context, **_notice(request))


@router.post("/reviews/{request_id}")
async def review(request_id: str, request: Request) -> Response:
    console = console_of(request)
    session = None
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        form = await checked_form(request, session, console.own_origin)
        service = console.approvals
        body = _parsed(
            ReviewBody, {"verdict": form.get("verdict", ""), "comment": form.get("comment", "")}
        )
        request_id = request_id[:ID_LENGTH]
        await run_in_threadpool(
            service.review, session.identity, request_id, body.verdict, body.comment
        )
    except Refused as exc:
        return refused(console, request, session, exc)
    except EvenError as exc:
        return console.domain_error(request, session, exc)
    query = urlencode({"done": "reviewed", "id": request_id})
    return RedirectResponse(f"/console/reviews?{query}", status_code=303)
