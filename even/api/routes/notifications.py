"""`GET /v1/notifications/deliveries` (admins): the state of every webhook delivery.

Bodies are not listed (they repeat audit records, available to auditors from the log) and
neither are URLs (they may carry credentials): a row names its subscription instead.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from even.api.deps import ComponentsDep, IdentityDep
from even.api.responses import problems
from even.errors import Denied, InvalidRequest
from even.notify.settings import EVENT_TYPES
from even.store import outbox_tables as outbox
from even.store.db import read_only

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])
ADMIN = "admin"


class NotAnAdmin(Denied):
    code = "admin_role_required"


class UnknownEvent(InvalidRequest):
    code = "unknown_event_type"


class Delivery(BaseModel):
    webhook_id: str
    subscription: str
    event_type: str
    audit_seq: int
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    created_at: str
    delivered_at: str | None


class DeliveryList(BaseModel):
    items: list[Delivery]
    next: int | None


@router.get(
    "/deliveries",
    response_model=DeliveryList,
    responses=problems(401, 403, 422, 429, 503),
)
def list_deliveries(
    components: ComponentsDep,
    identity: IdentityDep,
    status: Literal["pending", "delivered", "failed"] | None = None,
    event: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> DeliveryList:
    """Newest first; filters `status`, `event` (an event type), `limit`, `offset`."""
    if ADMIN not in components.access.roles(identity):
        raise NotAnAdmin("this needs the admin role")
    if event is not None and event not in EVENT_TYPES:
        # An unknown type could only match nothing; say so rather than answer an empty list.
        raise UnknownEvent(f"unknown event type; choose from {sorted(EVENT_TYPES)}")
    with read_only(components.engine) as conn:
        items, next_offset = outbox.list_deliveries(
            conn, status=status, event_type=event, limit=limit, offset=offset
        )
    return DeliveryList(items=[Delivery(**item) for item in items], next=next_offset)
