"""One access request's page (`/console/requests/{id}`, where notifications link) and the
requester's cancel button.

Who sees a request: whoever `GET /v1/access-requests/{id}` shows it to (the requester,
auditors, admins), and also an approver who may decide it now or review it (it is in their
`pending_for` / `reviews_for`), so the link in an approval notification works for the people
it was sent to. Anyone else gets the same 404 as for a request that does not exist.
Credentials are shown to the requester alone, as the API does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.requests import Request

from even.api.console.approval_info import progress_of
from even.api.console.csrf import Refused, checked_form
from even.api.console.sessions import ConsoleSession
from even.api.console.web import Console, console_of, refused, session_for, to_sign_in
from even.api.schemas import AccessGrantAnswer
from even.errors import EvenError, NotFound
from even.identity import Identity
from even.service.models import AccessRequestView

router = APIRouter(prefix="/console", include_in_schema=False)
ID_LENGTH = 64
SCAN_PAGE = 200
SCAN_PAGES = 5  # an approver's lists are short; never scan without bound


@dataclass(frozen=True)
class Decider:
    """What the caller may do to someone else's request as an approver or reviewer."""

    view: AccessRequestView | None = None
    can_decide: bool = False
    can_review: bool = False


def _as_decider(console: Console, identity: Identity, request_id: str) -> Decider:
    service = console.approvals
    for page in range(SCAN_PAGES):
        items = service.pending_for(identity, limit=SCAN_PAGE, offset=page * SCAN_PAGE)
        found = next((item for item in items if item.id == request_id), None)
        if found is not None:
            return Decider(found, can_decide=True)
        if len(items) < SCAN_PAGE:
            break
    for page in range(SCAN_PAGES):
        items = service.reviews_for(
            identity, overdue=False, limit=SCAN_PAGE, offset=page * SCAN_PAGE
        )
        found = next((item for item in items if item.id == request_id), None)
        if found is not None:
            return Decider(found, can_review=progress_of(found).reviewed_by is None)
        if len(items) < SCAN_PAGE:
            break
    return Decider()


def detail_context(
    console: Console, session: ConsoleSession, view: AccessRequestView | None, request_id: str
) -> dict[str, Any]:
    """The page's context; `view` when the caller already has it (the form's answer)."""
    identity = session.identity
    if view is None:
        try:
            view = console.components.access.get(identity, request_id)
            decider = Decider(view)
            if view.username != identity.username:
                decider = _as_decider(console, identity, request_id)
                view = decider.view or view
        except NotFound:
            decider = _as_decider(console, identity, request_id)
            if decider.view is None:
                raise
            view = decider.view
    else:
        decider = Decider(view)
    mine = view.username == identity.username
    return {
        "view": view,
        "progress": progress_of(view),
        "answer": AccessGrantAnswer.from_view(view) if mine else None,
        "mine": mine,
        "can_decide": decider.can_decide and not mine,
        "can_review": decider.can_review and not mine,
    }


def _status_of(request: Request) -> str | None:
    status = request.query_params.get("done")
    return status if status in ("cancelled",) else None


@router.get("/requests/{request_id}")
async def detail(request_id: str, request: Request) -> Response:
    console = console_of(request)
    session = None
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        context = await run_in_threadpool(
            detail_context, console, session, None, request_id[:ID_LENGTH]
        )
    except Refused as exc:
        return refused(console, request, session, exc)
    except EvenError as exc:
        return console.domain_error(request, session, exc)
    return console.page(
        request, "request_detail.html", session, fresh=False, done=_status_of(request), **context
    )


@router.post("/requests/{request_id}/cancel")
async def cancel(request_id: str, request: Request) -> Response:
    console = console_of(request)
    session = None
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        await checked_form(request, session, console.own_origin)
        service = console.approvals
        request_id = request_id[:ID_LENGTH]
        await run_in_threadpool(service.cancel, session.identity, request_id)
    except Refused as exc:
        return refused(console, request, session, exc)
    except EvenError as exc:
        return console.domain_error(request, session, exc)
    target = f"/console/requests/{quote(request_id, safe='')}?done=cancelled"
    return RedirectResponse(target, status_code=303)
