"""The original Even API (SPEC §7, classic) expressed with today's use cases.

`POST /access-requests {hostname, reason, username, remote_host, lifetime_minutes}`: `hostname`
is the bastion (its configured name, or the host of its address, as old clients knew it),
`remote_host` the host behind it, `username` the login. It is exactly a push-mode
`POST /v1/access-requests {hostname: remote_host, bastion, login, mode: push}` with the
caller's registered keys: same policy, same audit records, same fail-closed push. Without
`remote_host`, `hostname` is the host itself.

`GET /access-requests` lists requests in the original field names, scoped like /v1 (one's own;
everyone's for auditors and admins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from even.config import BastionSettings, parse_address
from even.errors import InvalidRequest
from even.identity import Identity
from even.service.access import AccessService
from even.service.admission import PRIVILEGED_READ_ROLES
from even.service.models import AccessRequestInput, AccessRequestView
from even.store.db import read_only
from even.store.tables import AccessRequestRow

_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ClassicRequest:
    hostname: str
    reason: str
    username: str | None = None
    remote_host: str | None = None
    lifetime_minutes: int | None = None


class ClassicAccess:
    def __init__(
        self, *, engine: Engine, access: AccessService, bastions: list[BastionSettings]
    ) -> None:
        self._engine = engine
        self._access = access
        self._bastions = list(bastions)

    def request_access(self, identity: Identity, request: ClassicRequest) -> AccessRequestView:
        return self._access.request_access(identity, self.to_input(request))

    def to_input(self, request: ClassicRequest) -> AccessRequestInput:
        if request.remote_host is None:
            hostname, bastion = request.hostname, None
        else:
            hostname, bastion = request.remote_host, self._bastion_name(request.hostname)
        return AccessRequestInput(
            hostname=hostname,
            reason=request.reason,
            login=request.username,
            bastion=bastion,
            lifetime_minutes=request.lifetime_minutes,
            mode="push",
            can_wait=False,  # the original client cannot wait for approvers
        )

    def _bastion_name(self, hostname: str) -> str:
        for bastion in self._bastions:
            if hostname == bastion.name or hostname == _address_host(bastion.address):
                return bastion.name
        raise InvalidRequest(f"hostname: {hostname[:253]!r} is not a configured bastion")

    def list_requests(
        self, identity: Identity, *, status: str | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        query = select(_requests)
        if not PRIVILEGED_READ_ROLES & set(self._access.roles(identity)):
            query = query.where(_requests.c.username == identity.username)
        if status is not None:
            query = query.where(_requests.c.status == status)
        query = query.order_by(_requests.c.created.desc(), _requests.c.id)
        with read_only(self._engine) as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).all()
        return [classic_item(row._mapping) for row in rows]


def classic_item(row: Any) -> dict[str, Any]:
    """A request in the original API's shape: `username` is the login, `hostname` the
    bastion when there is one (`remote_host` the host behind it), `created_by` the requester."""
    through_bastion = row["bastion"] is not None
    return {
        "id": row["id"],
        "username": row["login"],
        "hostname": row["bastion"] if through_bastion else row["hostname"],
        "remote_host": row["hostname"] if through_bastion else None,
        "reason": row["reason"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "lifetime_minutes": row["lifetime_minutes"],
        "created": row["created"],
        "created_by": row["username"],
        "last_modified": row["last_modified"],
        "last_modified_by": row["last_modified_by"] or row["username"],
    }


def _address_host(address: str) -> str | None:
    try:
        return parse_address(address)[0]
    except ValueError:
        return None
