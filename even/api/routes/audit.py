"""`/v1/audit/*`: checkpoint, public key (anyone); export and events (auditors)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from audit.chain import RECORD_FIELDS, canonical
from audit.show import escape_text
from even.api.deps import ComponentsDep, IdentityDep
from even.api.responses import problems
from even.errors import Denied, NotFound
from even.identity import Identity
from even.service.audit_log import EventFilters
from even.wiring import Components

router = APIRouter(prefix="/v1/audit", tags=["audit"])

RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"
# The record's own fields, with its hash in place of the link (a CSV is not verifiable).
CSV_COLUMNS = (*(f for f in RECORD_FIELDS if f != "prev_hash"), "hash")
AUDITOR = "auditor"


class NotAnAuditor(Denied):
    code = "auditor_role_required"


class PemResponse(PlainTextResponse):
    media_type = "application/x-pem-file"


class JsonLinesResponse(StreamingResponse):
    media_type = "application/x-ndjson"


class CsvResponse(StreamingResponse):
    media_type = "text/csv"


def _require_auditor(components: Components, identity: Identity) -> None:
    if AUDITOR not in components.access.roles(identity):
        raise NotAnAuditor("this needs the auditor role")


@router.get("/public-key", response_class=PemResponse)
def audit_public_key(components: ComponentsDep) -> Response:
    """The audit key (Ed25519, SubjectPublicKeyInfo PEM) that signs checkpoints and receipts."""
    return PemResponse(components.signer.public_pem().decode("ascii"))


@router.get("/checkpoint", responses=problems(404, 503))
def latest_checkpoint(components: ComponentsDep) -> dict[str, Any]:
    """The newest signed checkpoint (an anchor auditors can keep)."""
    checkpoint = components.audit_log.latest_checkpoint()
    if checkpoint is None:
        raise NotFound("no checkpoint yet")
    return checkpoint


@router.get(
    "/export",
    response_class=JsonLinesResponse,
    responses={
        **problems(401, 403, 422, 429, 503),
        200: {
            "content": {"application/x-ndjson": {}, "text/csv": {}},
            "description": "JSONL: the whole log from seq 1 with checkpoints; CSV: rows",
        },
    },
)
async def export(
    components: ComponentsDep,
    identity: IdentityDep,
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
    since: Annotated[str | None, Query(pattern=RFC3339)] = None,
    until: Annotated[str | None, Query(pattern=RFC3339)] = None,
) -> Response:
    """Stream the log. JSONL is always whole and verifiable; CSV honours since/until."""
    _require_auditor(components, identity)
    audit_log = components.audit_log
    up_to = await run_in_threadpool(
        audit_log.start_export, identity, export_format=format, since=since, until=until
    )
    if format == "csv":
        rows = audit_log.export_records(up_to, since=since, until=until)
        return CsvResponse(_csv_lines(rows), headers=_attachment("audit.csv"))
    lines = (canonical(item) + b"\n" for item in audit_log.export_items(up_to))
    return JsonLinesResponse(lines, headers=_attachment("audit.jsonl"))


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def _csv_lines(records: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        row = dict(record, details=canonical(record["details"]).decode())
        # Escaped so a spreadsheet or terminal shows what was sent, not what it does.
        row["reason"] = escape_text(record["reason"]) if record["reason"] is not None else ""
        cells = ["" if row[c] is None else str(row[c]) for c in CSV_COLUMNS]
        # A leading =, +, - or @ would be a formula in a spreadsheet (CSV injection).
        writer.writerow(["'" + c if c[:1] in ("=", "+", "-", "@") else c for c in cells])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


@router.get("/events", responses=problems(401, 403, 422, 429, 503))
def events(
    components: ComponentsDep,
    identity: IdentityDep,
    since: Annotated[str | None, Query(pattern=RFC3339)] = None,
    until: Annotated[str | None, Query(pattern=RFC3339)] = None,
    username: Annotated[str | None, Query(max_length=64)] = None,
    login: Annotated[str | None, Query(max_length=64)] = None,
    hostname: Annotated[str | None, Query(max_length=253)] = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    after_seq: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Audit records matching the filters; page with `after_seq` = the answer's `next`."""
    _require_auditor(components, identity)
    filters = EventFilters(
        since=since,
        until=until,
        username=username,
        login=login,
        hostname=hostname,
        type=type,
        after_seq=after_seq,
        limit=limit,
    )
    items = components.audit_log.events(filters)
    return {"items": items, "next": items[-1]["seq"] if len(items) == limit else None}
