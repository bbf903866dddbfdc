"""Revocation (SPEC §6): end a grant, and publish the KRL that plain OpenSSH enforces.

A revoke commits `access.revoked` and the REVOKED status in one transaction; from then on
`GET /v1/krl` lists the grant's serials until `valid_before` + 10 minutes. The KRL's
generation is the time (Unix seconds) of its latest change — a revocation, or a serial aging
out — so it only grows, is the same on every replica, and does not change between changes.
A failed push whose clean-up is incomplete (lines may remain on a host) is revocable too:
REVOKED once every host is clean, which also takes it off the reconciler's list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from audit.chain import AuditEvent
from even.clock import Clock, rfc3339
from even.errors import Conflict, Denied, NotFound, RevokeIncomplete
from even.identity import Identity
from even.service.krl_publisher import Krl, KrlPublisher, record_revocation
from even.store import access_requests
from even.store.db import read_only, transaction
from even.store.tables import AccessRequestRow
from even.store.unit_of_work import append_record

REVOKERS = frozenset({"admin"})
_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]


class RevokeNotAllowed(Denied):
    code = "revoke_not_allowed"


class NotRevocable(Conflict):
    """409: the request was never granted (denied or failed)."""

    code = "not_revocable"


class RevocationService:
    def __init__(
        self,
        *,
        engine: Engine,
        clock: Clock,
        roles_for: Callable[[Identity], list[str]],
        push_revoker: Callable[[str], list[str]] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._roles_for = roles_for
        # Push mode: removes a grant's lines from its hosts, returns the hosts left unclean.
        self._push_revoker = push_revoker
        self._krl = KrlPublisher(engine=engine, clock=clock)

    def _authorize(self, identity: Identity, row: Any) -> Any:
        """The row if `identity` may revoke it; NotFound / RevokeNotAllowed otherwise."""
        privileged = bool(REVOKERS & set(self._roles_for(identity)))
        may_read = row is not None and (
            row.username == identity.username
            or privileged
            or "auditor" in self._roles_for(identity)
        )
        if row is None or not may_read:
            raise NotFound("no such access request")
        if row.username != identity.username and not privileged:
            raise RevokeNotAllowed("only the requester or an admin may revoke")
        return row

    def _remove_pushed_lines(self, identity: Identity, request_id: str) -> None:
        """Push grants: every host clean before REVOKED is recorded (SPEC §5), else 502.

        Outside the write transaction: hosts may take seconds, and the writer lock is global.
        Authorised first, so nobody else's request makes Even talk to hosts.
        """
        with read_only(self._engine) as conn:
            row = conn.execute(select(_requests).where(_requests.c.id == request_id)).first()
        if row is None or row.mode != "push" or not _revocable(row):
            return  # the transaction below gives the right answer
        self._authorize(identity, row)
        assert self._push_revoker is not None
        unclean = self._push_revoker(request_id)
        if unclean:
            raise RevokeIncomplete(
                f"the key could not be removed from {', '.join(unclean)}; the grant stays "
                "GRANTED until every host is clean: try again"
            )

    def revoke(self, identity: Identity, request_id: str, reason: str | None) -> str:
        """Revoke `request_id`; returns its status afterwards (idempotent for REVOKED)."""
        if self._push_revoker is not None:
            self._remove_pushed_lines(identity, request_id)
        with transaction(self._engine) as conn:
            found = conn.execute(select(_requests).where(_requests.c.id == request_id)).first()
            row = self._authorize(identity, found)
            if row.status == "REVOKED":
                return "REVOKED"
            if not _revocable(row):
                raise NotRevocable(f"a {row.status} request has nothing to revoke")
            now = self._clock.now()
            serials = [row.serial, row.bastion_serial]
            append_record(
                conn,
                AuditEvent(
                    type="access.revoked",
                    username=row.username,
                    login=row.login,
                    hostname=row.hostname,
                    request_id=row.id,
                    reason=row.reason,
                    details={
                        "serial": row.serial,
                        "bastion_serial": row.bastion_serial,
                        "key_id": row.key_id,
                        "by": identity.username,
                        "revoke_reason": reason,
                        "mode": row.mode,
                        "serials": [s for s in serials if s is not None],
                    },
                ),
                now,
            )
            # Numbered, so GET /v1/krl notices with one read and fetches exactly this one.
            number = record_revocation(conn)
            conn.execute(
                update(_requests)
                .where(_requests.c.id == request_id)
                .values(
                    status="REVOKED",
                    revoked_at=rfc3339(now),
                    revocation_seq=number,
                    revoked_by=identity.username,
                    status_reason=reason or "revoked",
                    last_modified=rfc3339(now),
                    last_modified_by=identity.username,
                )
            )
        self._krl.invalidate()  # committed: this replica's KRL shows it at the next call
        return "REVOKED"

    def krl(self) -> Krl:
        """The current KRL; rebuilt only when a revocation or an expiry changed it."""
        return self._krl.current()

    def fresh_krl(self) -> Krl | None:
        """The KRL without I/O if it is known current, else None (then call `krl`)."""
        return self._krl.fresh()


def _revocable(row: Any) -> bool:
    """Granted (or expired) requests, and failed pushes that may still have left a line."""
    return row.status in ("GRANTED", "EXPIRED") or access_requests.needs_cleanup(row)
