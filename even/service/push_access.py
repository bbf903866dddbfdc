"""The push-mode use cases (SPEC §5): grant by pushing keys to a bastion and a host; undo it.

Fail closed, in three steps, never holding the writer lock while talking to hosts:
1. One transaction: `access.requested`, the policy decision, then either `access.denied`
   (DENIED) or `access.push_started` (PUSHING) carrying the plan — fingerprints, login,
   hosts, expiry, grant ids. It commits before any host is touched, so every line that ever
   reaches a host is on record first.
2. The push (`even.push.runner`): all-or-nothing across hosts; a failure revokes whatever
   was pushed before it is reported.
3. One transaction: `access.granted` (GRANTED) or `access.failed` (FAILED; 502 to the client).
   If the success cannot be committed, the pushed lines are removed before the error (503)
   goes out; if the grant was meanwhile reconciled (the push outlived push.timeout_seconds),
   they are removed too and nothing is granted.
Whatever dies in between (the process, the database) leaves a PUSHING row with its
`push_started` record: `even.service.jobs` reconciles it.

The expiry pushed is the grant's end rounded down to the second, so sshd stops accepting the
key no later than the `valid_before` Even records. A login equal to the push user (or, through
a bastion, a requester whose bastion account is the push user) is refused as a denial.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from audit import store as audit_store
from audit.chain import AuditEvent
from audit.signing import AuditSigner
from even.clock import Clock, rfc3339
from even.errors import (
    Denied,
    EvenError,
    InvalidRequest,
    LoginNotAllowed,
    PolicyRejected,
    PushFailed,
)
from even.identity import Identity
from even.ids import new_request_id
from even.names import is_bastion_name, is_hostname, is_login
from even.policy import Grant, Subject
from even.push.commands import floor_seconds, odd_expiry
from even.push.plan import PushKey, PushPlan, plan_from_json, plan_push
from even.push.runner import GrantFailed, PushRunner
from even.service.access import AccessService, BastionNotAllowed, IdempotencyKey, _view
from even.service.models import AccessRequestInput, AccessRequestView
from even.service.user_keys import UserKeyService
from even.sshkeys import ParsedPublicKey, parse_public_key
from even.store import idempotency as idempotency_store
from even.store.db import read_only, transaction
from even.store.tables import AccessRequestRow

log = logging.getLogger("even.push")
_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]

Flow = Callable[[IdempotencyKey | None], AccessRequestView]


class NoRegisteredKeys(InvalidRequest):
    code = "no_registered_keys"


@dataclass(frozen=True)
class _Checked:
    login: str
    keys: tuple[ParsedPublicKey, ...]

    @property
    def push_keys(self) -> list[PushKey]:
        return [PushKey(k.key_type, k.openssh.split(" ")[1], k.fingerprint) for k in self.keys]

    @property
    def fingerprints(self) -> list[str]:
        return [k.fingerprint for k in self.keys]


@dataclass(frozen=True)
class _Started:
    plan: PushPlan
    expires: datetime
    details: dict[str, Any]  # what access.push_started said about the grant


class PushAccessService:
    def __init__(
        self,
        *,
        engine: Engine,
        access: AccessService,
        keys: UserKeyService,
        runner: PushRunner,
        signer: AuditSigner,
        clock: Clock,
        push_user: str,
        timeout_seconds: float,
    ) -> None:
        self._engine = engine
        self._access = access
        self._keys = keys
        self._runner = runner
        self._signer = signer
        self._clock = clock
        self._push_user = push_user
        self.timeout_seconds = timeout_seconds

    def close(self) -> None:
        self._runner.close()

    # -- request access -------------------------------------------------------------------

    def prepare(self, identity: Identity, request: AccessRequestInput) -> Flow:
        """Validate (422s raise here, before an Idempotency-Key is taken); return the flow."""
        checked = self._validate(identity, request)
        return functools.partial(self._request, identity, request, checked)

    def _validate(self, identity: Identity, request: AccessRequestInput) -> _Checked:
        if not is_hostname(request.hostname):
            raise InvalidRequest("hostname: lowercase DNS name required (no IP literals)")
        login = request.login if request.login is not None else identity.username
        if not is_login(login):
            raise InvalidRequest("login: must match ^[a-z_][a-z0-9_.-]{0,31}$")
        if request.bastion is not None and not is_bastion_name(request.bastion):
            raise InvalidRequest("bastion: not a valid bastion name")
        if request.public_key is not None:
            keys = [parse_public_key(request.public_key)]
        else:
            keys = self._keys.keys_for(identity.username)
            if not keys:
                raise NoRegisteredKeys(
                    "public_key: none given and none registered; register one with "
                    "`piu keys add FILE` (PUT /v1/users/me/keys)"
                )
        return _Checked(login=login, keys=tuple(keys))

    def _request(
        self,
        identity: Identity,
        request: AccessRequestInput,
        checked: _Checked,
        idempotency: IdempotencyKey | None,
    ) -> AccessRequestView:
        self._access.ensure_policy_recorded()
        request_id = new_request_id()
        refusal: EvenError | None = None
        with transaction(self._engine) as conn:
            now = self._clock.now()
            self._append(
                conn,
                "access.requested",
                identity,
                request,
                checked,
                request_id,
                {
                    "mode": "push",
                    "fingerprint": checked.fingerprints[0],
                    "fingerprints": checked.fingerprints,
                    "lifetime_minutes": request.lifetime_minutes,
                    "bastion": request.bastion,
                    "dev_issuer": identity.dev_issuer,
                },
            )
            try:
                grant = self._decide(identity, request, checked.login)
            except (Denied, PolicyRejected) as exc:
                refusal = exc
                self._deny(conn, identity, request, checked, request_id, exc, idempotency)
            else:
                started = self._start(conn, identity, request, checked, request_id, grant, now)
        if refusal is not None:
            raise refusal  # only after the denial record has committed
        try:
            self._runner.grant(
                started.plan, checked.push_keys, started.expires, timeout=self.timeout_seconds
            )
        except GrantFailed as failure:
            self._record_failure(identity, request, checked, request_id, failure)
        return self._record_success(identity, request, checked, request_id, started, idempotency)

    def _decide(self, identity: Identity, request: AccessRequestInput, login: str) -> Grant:
        # The push user's own key file is not the managed one; a key for it would be a
        # login able to run odd itself. Refused whatever the policy says.
        if login == self._push_user:
            raise LoginNotAllowed(f"login {login!r} is Even's push user and is never granted")
        policy = self._access.policy
        subject = Subject(identity.username, identity.groups)
        rule = policy.decide(subject, hostname=request.hostname, login=login, mode="push")
        if request.bastion is not None and request.bastion != rule.bastion:
            raise BastionNotAllowed(f"bastion {request.bastion!r} is not allowed for this host")
        if rule.bastion is not None and identity.username == self._push_user:
            raise LoginNotAllowed("the requester's bastion account is Even's push user")
        return policy.check(rule, reason=request.reason, lifetime_minutes=request.lifetime_minutes)

    def _start(
        self,
        conn: Connection,
        identity: Identity,
        request: AccessRequestInput,
        checked: _Checked,
        request_id: str,
        grant: Grant,
        now: datetime,
    ) -> _Started:
        rule = grant.rule
        # Rounded down: sshd's expiry-time has seconds, and must never outlast the grant.
        expires = floor_seconds(now + timedelta(minutes=grant.lifetime_minutes))
        plan = plan_push(
            request_id=request_id,
            username=identity.username,
            login=checked.login,
            hostname=request.hostname,
            bastion=rule.bastion,
            sources=rule.source_addresses,
            key_count=len(checked.keys),
        )
        details = {**_grant_details(checked, plan, expires, grant), "valid_after": rfc3339(now)}
        if identity.dev_issuer:
            details["dev_issuer"] = True
        self._append(
            conn,
            "access.push_started",
            identity,
            request,
            checked,
            request_id,
            {**details, "push": plan.as_json()},
        )
        conn.execute(
            _requests.insert().values(
                id=request_id,
                status="PUSHING",
                username=identity.username,
                login=checked.login,
                hostname=request.hostname,
                mode="push",
                reason=request.reason,
                rule=rule.name,
                bastion=rule.bastion,
                lifetime_minutes=grant.lifetime_minutes,
                fingerprint=checked.fingerprints[0],
                valid_after=rfc3339(now),
                valid_before=rfc3339(expires),
                created=rfc3339(now),
                last_modified=rfc3339(now),
            )
        )
        return _Started(plan=plan, expires=expires, details=details)

    def _record_success(
        self,
        identity: Identity,
        request: AccessRequestInput,
        checked: _Checked,
        request_id: str,
        started: _Started,
        idempotency: IdempotencyKey | None,
    ) -> AccessRequestView:
        view: AccessRequestView | None = None
        try:
            with transaction(self._engine) as conn:
                row = _row(conn, request_id)
                if row is not None and row.status == "PUSHING":
                    view = self._grant(conn, identity, request, checked, request_id, started)
                    if idempotency is not None:
                        # With the grant: the stored answer exists exactly when the grant does.
                        answer = {"view": asdict(view)}
                        idempotency_store.finish(conn, identity.username, idempotency.key, answer)
        except BaseException:
            # No committed outcome, so no grant: take the lines back before answering.
            self._undo(started.plan, request_id)
            raise
        if view is None:
            # The reconciler got here first (the push outlived push.timeout_seconds).
            self._undo(started.plan, request_id)
            raise PushFailed("the push took longer than allowed and was undone; nothing granted")
        return view

    def _grant(
        self,
        conn: Connection,
        identity: Identity,
        request: AccessRequestInput,
        checked: _Checked,
        request_id: str,
        started: _Started,
    ) -> AccessRequestView:
        now = self._clock.now()
        record = self._append(
            conn, "access.granted", identity, request, checked, request_id, started.details
        )
        conn.execute(
            update(_requests)
            .where(_requests.c.id == request_id)
            .values(status="GRANTED", last_modified=rfc3339(now))
        )
        granted = _row(conn, request_id)
        receipt = self._signer.receipt(record["seq"], record["hash"])
        return _view(granted._mapping, receipt=receipt)

    def _record_failure(
        self,
        identity: Identity,
        request: AccessRequestInput,
        checked: _Checked,
        request_id: str,
        failure: GrantFailed,
    ) -> None:
        """Commit `access.failed` and raise PushFailed (502); StoreUnavailable (503) if it
        cannot be committed — the hosts are already clean, and the reconciler closes the row."""
        cause = failure.cause
        with transaction(self._engine) as conn:
            now = self._clock.now()
            row = _row(conn, request_id)
            if row is not None and row.status == "PUSHING":
                details: dict[str, Any] = {
                    "mode": "push",
                    "code": PushFailed.code,
                    "error": str(cause),
                    "host": cause.host,
                    "cleanup": "incomplete" if failure.leftovers else "clean",
                    "leftover_hosts": failure.leftovers,
                    "fingerprints": checked.fingerprints,
                }
                self._append(conn, "access.failed", identity, request, checked, request_id, details)
                conn.execute(
                    update(_requests)
                    .where(_requests.c.id == request_id)
                    .values(
                        status="FAILED",
                        status_reason=f"push_failed: {cause.host}",
                        last_modified=rfc3339(now),
                    )
                )
        log.warning("push %s failed: %s (left on: %s)", request_id, cause, failure.leftovers)
        raise PushFailed(f"could not push the key: {cause}; nothing was granted") from cause

    def _deny(
        self,
        conn: Connection,
        identity: Identity,
        request: AccessRequestInput,
        checked: _Checked,
        request_id: str,
        error: EvenError,
        idempotency: IdempotencyKey | None,
    ) -> None:
        now = self._clock.now()
        details: dict[str, Any] = {"code": error.code, "mode": "push"}
        if "rule" in error.extra:
            details["rule"] = str(error.extra["rule"])
        self._append(conn, "access.denied", identity, request, checked, request_id, details)
        conn.execute(
            _requests.insert().values(
                id=request_id,
                status="DENIED",
                username=identity.username,
                login=checked.login,
                hostname=request.hostname,
                mode="push",
                reason=request.reason,
                rule=details.get("rule"),
                bastion=request.bastion,
                lifetime_minutes=request.lifetime_minutes or 0,
                fingerprint=checked.fingerprints[0],
                status_reason=error.code,
                created=rfc3339(now),
                last_modified=rfc3339(now),
            )
        )
        if idempotency is not None:
            answer = {
                "error": {
                    "type": type(error).__name__,
                    "code": error.code,
                    "message": error.message,
                    "extra": dict(error.extra),
                }
            }
            idempotency_store.finish(conn, identity.username, idempotency.key, answer)

    def _append(
        self,
        conn: Connection,
        record_type: str,
        identity: Identity,
        request: AccessRequestInput,
        checked: _Checked,
        request_id: str,
        details: dict[str, Any],
    ) -> dict[str, Any]:
        event = AuditEvent(
            type=record_type,
            username=identity.username,
            login=checked.login,
            hostname=request.hostname,
            request_id=request_id,
            reason=request.reason,
            details=details,
        )
        return audit_store.append(conn, event, self._clock.now())

    # -- undo -----------------------------------------------------------------------------

    def _undo(self, plan: PushPlan, request_id: str) -> None:
        leftovers = self._runner.revoke(plan, timeout=self.timeout_seconds)
        if leftovers:
            log.error("push %s: lines may remain on %s until they expire", request_id, leftovers)

    def pushed_plan(self, request_id: str) -> PushPlan | None:
        """The plan recorded in the request's `access.push_started`, if it has one."""
        with read_only(self._engine) as conn:
            records = audit_store.records_for_request(conn, request_id)
        for record in records:
            if record["type"] == "access.push_started":
                try:
                    return plan_from_json(record["details"].get("push"))
                except ValueError:
                    log.error("push %s: push_started has no usable plan", request_id)
                    return None
        return None

    def revoke_lines(self, request_id: str, *, end_sessions: bool = False) -> list[str]:
        """Remove the request's pushed lines from every host; the hosts that stayed unclean."""
        plan = self.pushed_plan(request_id)
        if plan is None:
            return []  # nothing was ever pushed for it
        return self._runner.revoke(plan, timeout=self.timeout_seconds, end_sessions=end_sessions)


def _row(conn: Connection, request_id: str) -> Any:
    return conn.execute(select(_requests).where(_requests.c.id == request_id)).first()


def _grant_details(
    checked: _Checked, plan: PushPlan, expires: datetime, grant: Grant
) -> dict[str, Any]:
    rule = grant.rule
    return {
        "mode": "push",
        "rule": rule.name,
        "bastion": rule.bastion,
        "login": checked.login,
        "hosts": plan.hosts,
        "fingerprint": checked.fingerprints[0],
        "fingerprints": checked.fingerprints,
        "expiry": odd_expiry(expires),
        "valid_before": rfc3339(expires),
        "lifetime_minutes": grant.lifetime_minutes,
        "source_addresses": list(rule.source_addresses),
        "grant_ids": list(plan.grant_ids),
    }
