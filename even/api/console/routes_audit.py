"""The auditors' page: events with filters, the newest checkpoint and whether the chain
verifies up to it, grants per day as an SVG chart, and the JSONL export.

Everything here needs the auditor role (403 otherwise), decided by the policy's roles as for
`/v1/audit/*`. The export is the API's: `AuditLogService.start_export` audits it
(`audit.exported`, by the signed-in auditor) and checkpoints the head, then the same lines
stream as from `GET /v1/audit/export?format=jsonl`.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from starlette.requests import Request

from audit.chain import canonical
from audit.record_types import RECORD_TYPES
from even.api.console import chart
from even.api.console.csrf import Refused, check_same_origin
from even.api.console.sessions import ConsoleSession
from even.api.console.web import AUDITOR, Console, console_of, refused, session_for, to_sign_in
from even.errors import EvenError
from even.service.audit_log import EventFilters
from even.service.audit_views import grants_per_day

router = APIRouter(prefix="/console", include_in_schema=False)
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
PAGE_SIZE = 100
FILTER_LIMITS = {"username": 64, "login": 64, "hostname": 253}


def _require_auditor(console: Console, session: ConsoleSession) -> None:
    if AUDITOR not in console.roles(session):
        raise Refused(403, "The audit pages need the auditor role.")


def _filters(params: dict[str, str]) -> tuple[EventFilters, dict[str, str]]:
    shown: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name in ("since", "until"):
        value = params.get(name, "").strip()
        if value:
            if not DAY.fullmatch(value):
                raise Refused(422, f"{name}: a date, YYYY-MM-DD")
            shown[name] = value
            values[name] = value + "T00:00:00Z"
    for name, limit in FILTER_LIMITS.items():
        value = params.get(name, "").strip()
        if value:
            if len(value) > limit or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                raise Refused(422, f"{name}: not a valid filter")
            shown[name] = values[name] = value
    kind = params.get("type", "").strip()
    if kind:
        if kind not in RECORD_TYPES:
            raise Refused(422, "type: not an audit record type")
        shown["type"] = values["type"] = kind
    after = params.get("after_seq", "").strip()
    if after:
        if not after.isdigit() or len(after) > 16:
            raise Refused(422, "after_seq: a record number")
        values["after_seq"] = int(after)
    return EventFilters(**values, limit=PAGE_SIZE), shown


def _audit_context(console: Console, filters: EventFilters) -> dict[str, Any]:
    components = console.components
    events = components.audit_log.events(filters)
    days = grants_per_day(components.engine, components.clock)
    return {
        "events": events,
        "next_seq": events[-1]["seq"] if len(events) == filters.limit else None,
        "chain": console.chain.status(),
        "chart": chart.build(days),
        "days": days,
        "event_types": RECORD_TYPES,
    }


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    console = console_of(request)
    session = None
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        _require_auditor(console, session)
        filters, shown = _filters(dict(request.query_params))
        context = await run_in_threadpool(_audit_context, console, filters)
    except Refused as exc:
        return refused(console, request, session, exc)
    except EvenError as exc:
        return console.domain_error(request, session, exc)
    next_query = None
    if context["next_seq"] is not None:
        next_query = {**shown, "after_seq": str(context["next_seq"])}
    return console.page(
        request, "audit.html", session, filters=shown, next_query=next_query, **context
    )


@router.get("/audit/export.jsonl")
async def export(request: Request) -> Response:
    console = console_of(request)
    session = None
    try:
        session = await session_for(request, console)
        if session is None:
            return to_sign_in()
        _require_auditor(console, session)
        # A link, but it writes an audit record: another site may not trigger it.
        if request.headers.get("sec-fetch-site") not in (None, "none"):
            check_same_origin(request, console.own_origin)
        audit_log = console.components.audit_log
        up_to = await run_in_threadpool(
            audit_log.start_export, session.identity, export_format="jsonl", since=None, until=None
        )
    except Refused as exc:
        return refused(console, request, session, exc)
    except EvenError as exc:
        return console.domain_error(request, session, exc)
    lines = (canonical(item) + b"\n" for item in audit_log.export_items(up_to))
    return StreamingResponse(
        lines,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'},
    )
