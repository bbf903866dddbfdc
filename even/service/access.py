"""The "request access" use case's front door, and the read side of access requests.

`request_access` validates in the request's mode (422s before anything is taken), takes an
Idempotency-Key (or replays its answer), runs the mode's flow and frees the key again if the
flow ended without an outcome. Certificate mode is even.service.certificate_access, push mode
even.service.push_access; both were built in even.wiring and passed in here. Reads are scoped:
one's own requests, everyone's for auditors and admins (someone else's request is
indistinguishable from a missing one).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.engine import Engine

from even.errors import Denied, NotFound, PolicyRejected
from even.identity import Identity
from even.policy import Policy
from even.service.admission import PRIVILEGED_READ_ROLES, ModeUnavailable, PolicyGate
from even.service.certificate_access import CertificateGrants
from even.service.idempotency import Idempotency, IdempotencyKey
from even.service.models import AccessRequestInput, AccessRequestView, ListFilters
from even.service.views import view
from even.store import access_requests, approval_store
from even.store.db import read_only

__all__ = ["PRIVILEGED_READ_ROLES", "AccessService", "IdempotencyKey", "PushRequests"]

Flow = Callable[[IdempotencyKey | None], AccessRequestView]


class PushRequests(Protocol):
    def prepare(self, identity: Identity, request: AccessRequestInput) -> Flow: ...


class AccessService:
    def __init__(
        self,
        *,
        engine: Engine,
        gate: PolicyGate,
        idempotency: Idempotency,
        certificate: CertificateGrants,
        push: PushRequests | None = None,
    ) -> None:
        self._engine = engine
        self._gate = gate
        self._idempotency = idempotency
        self._certificate = certificate
        self._push = push  # None: push mode is not configured

    @property
    def policy(self) -> Policy:
        return self._gate.policy

    def record_policy_loaded(self, source: str) -> None:
        self._gate.record_loaded(source)

    def replace_policy(self, policy: Policy) -> None:
        """Decide with `policy` from now on; its `policy.loaded` is already committed (the
        reload records it first: fail closed). Both modes share the gate, so both switch."""
        self._gate.policy = policy
        self._gate.recorded = True

    def ensure_policy_recorded(self) -> None:
        self._gate.ensure_recorded()

    # -- writes ---------------------------------------------------------------------------

    def request_access(
        self,
        identity: Identity,
        request: AccessRequestInput,
        idempotency: IdempotencyKey | None = None,
    ) -> AccessRequestView:
        flow: Flow
        if request.mode == "push":
            if self._push is None:
                raise ModeUnavailable("push mode is not configured on this server (push.*)")
            flow = self._push.prepare(identity, request)
        else:
            checked = self._certificate.validate(identity, request)
            flow = functools.partial(self._certificate.grant, identity, request, checked)
        if idempotency is not None:
            replay = self._idempotency.claim(identity.username, idempotency)
            if replay is not None:
                return replay
        try:
            return flow(idempotency)
        except (Denied, PolicyRejected):
            raise  # the denial and its stored answer committed together
        except BaseException:
            if idempotency is not None:
                self._idempotency.release(identity.username, idempotency)
            raise

    async def request_access_async(
        self,
        identity: Identity,
        request: AccessRequestInput,
        idempotency: IdempotencyKey | None = None,
    ) -> AccessRequestView:
        """The same use case for an event loop: the common case (certificate mode, no
        Idempotency-Key, policy already on record, a group-commit writer) runs its pure steps
        inline and awaits the writer, holding no thread; anything else takes a worker thread."""
        common = (
            request.mode == "certificate"
            and idempotency is None
            and self._gate.recorded
            and self._certificate.grouped
        )
        if not common:
            return await asyncio.to_thread(self.request_access, identity, request, idempotency)
        return await self._certificate.grant_async(identity, request)

    # -- reads ----------------------------------------------------------------------------

    def get(self, identity: Identity, request_id: str) -> AccessRequestView:
        with read_only(self._engine) as conn:
            row = access_requests.find(conn, request_id)
            # Someone else's request is indistinguishable from a missing one.
            if row is None or not self._may_read(identity, row["username"]):
                raise NotFound("no such access request")
            extras = approval_store.view_extras(conn, [request_id])
        return view(row, extras=extras.get(request_id))

    def list_requests(
        self, identity: Identity, filters: ListFilters
    ) -> tuple[list[AccessRequestView], int | None]:
        username = filters.username if self._gate.privileged(identity) else identity.username
        with read_only(self._engine) as conn:
            rows = access_requests.search(
                conn,
                username=username,
                status=filters.status,
                hostname=filters.hostname,
                login=filters.login,
                limit=filters.limit + 1,
                offset=filters.offset,
            )
            more = len(rows) > filters.limit
            rows = rows[: filters.limit]
            extras = approval_store.view_extras(conn, [r["id"] for r in rows])
        items = [view(r, extras=extras.get(r["id"])) for r in rows]
        return items, (filters.offset + filters.limit) if more else None

    def count(self) -> int:
        with read_only(self._engine) as conn:
            return access_requests.count(conn)

    def roles(self, identity: Identity) -> list[str]:
        return self._gate.roles(identity)

    def _may_read(self, identity: Identity, owner: str) -> bool:
        return owner == identity.username or self._gate.privileged(identity)

    def allowed(self, identity: Identity) -> list[dict[str, object]]:
        return self._gate.allowed(identity)
