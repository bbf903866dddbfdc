"""The "request access" use case (certificate mode) and the read side of access requests.

Fail closed: inside one transaction the request is recorded (`access.requested`), the
serials' rows are written and `access.granted` is appended; the certificate is returned only
after that transaction has committed. A denial commits its `access.denied` record before the
error reaches the client.

Policy decides before the write lock (it is pure). Where the process holds serials reserved
ahead of need (even.service.serial_pool), the certificates are signed before the lock too and
kept only if the CA that signed is still the active one inside the transaction; otherwise
serials are drawn and certificates signed under the lock. The receipt (a signature over the
committed record) is signed after the commit unless an Idempotency-Key stores the answer.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from audit import store as audit_store
from audit.chain import AuditEvent, SealTemplate
from audit.signing import AuditSigner
from even.ca import CertificateRequest, UserCA
from even.clock import Clock, rfc3339
from even.config import BastionSettings
from even.errors import (
    Denied,
    EvenError,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidRequest,
    LifetimeTooLong,
    LoginNotAllowed,
    NoMatchingRule,
    NotFound,
    PolicyRejected,
    ReasonRejected,
)
from even.identity import Identity
from even.ids import new_request_id
from even.names import is_bastion_name, is_hostname, is_login
from even.policy import Grant, Policy, Rule, Subject
from even.service.ca_registry import CaRegistry
from even.service.models import AccessRequestInput, AccessRequestView, ListFilters
from even.service.serial_pool import SerialPool
from even.sshkeys import ParsedPublicKey, parse_public_key
from even.store import idempotency as idempotency_store
from even.store.db import read_only, transaction
from even.store.tables import AccessRequestRow, CertificateSerialRow
from even.store.writer import GroupCommitWriter, batch_state, insert_row

CLOCK_SKEW = timedelta(seconds=60)
BASTION_FORCE_COMMAND = "/usr/sbin/nologin"
PRIVILEGED_READ_ROLES = frozenset({"auditor", "admin"})

_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]
_serials = CertificateSerialRow.__table__  # type: ignore[attr-defined]
# Built once: SQLAlchemy then reuses the compiled statement (building per call is costly).
_INSERT_REQUEST = _requests.insert()
_INSERT_SERIAL = _serials.insert()
_T = TypeVar("_T")


class PushRequests(Protocol):
    def prepare(
        self, identity: Identity, request: AccessRequestInput
    ) -> Callable[[IdempotencyKey | None], AccessRequestView]: ...


class BastionNotAllowed(Denied):
    code = "bastion_not_allowed"


class ModeUnavailable(InvalidRequest):
    code = "mode_unavailable"


@dataclass(frozen=True)
class IdempotencyKey:
    key: str
    body_sha256: str


@dataclass(frozen=True)
class _Validated:
    login: str
    public_key: ParsedPublicKey


@dataclass(frozen=True)
class _Signed:
    """A grant's certificates, signed with `ca_fingerprint` and the serials they carry."""

    serial: int
    certificate: str
    bastion_serial: int | None
    bastion_certificate: str | None
    ca_fingerprint: str
    valid_after: datetime
    valid_before: datetime
    principals: list[str]

    @functools.cached_property
    def valid_after_text(self) -> str:
        return rfc3339(self.valid_after)

    @functools.cached_property
    def valid_before_text(self) -> str:
        return rfc3339(self.valid_before)


@dataclass(frozen=True)
class _GrantDraft:
    """Everything a grant writes that does not depend on its place in the log."""

    signed: _Signed
    granted: SealTemplate  # `access.granted`, canonicalised ahead
    row: dict[str, Any]  # the access_requests row but for `created`/`last_modified`
    serial_rows: list[dict[str, Any]]  # for serials reserved ahead (drawn ones have theirs)


class _Granted(NamedTuple):
    """What a grant's transaction leaves for its answer: the row and any receipt signed in it
    (the view is built after the commit, outside the write lock)."""

    row: dict[str, Any]
    receipt: dict[str, Any] | None


@dataclass
class _Prepared:
    """A decided request and the transaction work that records it."""

    request_id: str
    refusal: Denied | PolicyRejected | None
    record: Callable[[Connection], _Granted | None]
    # `record` puts the granted record here when the receipt is left for after the commit (a
    # dict of its own, not this object: a closure over this object would make a cycle that
    # only the garbage collector's pauses could free).
    unsigned: dict[str, dict[str, Any]]


class AccessService:
    def __init__(
        self,
        *,
        engine: Engine,
        policy: Policy,
        ca_registry: CaRegistry,
        signer: AuditSigner,
        clock: Clock,
        bastions: list[BastionSettings],
    ) -> None:
        self._engine = engine
        self.policy = policy
        self._ca_registry = ca_registry
        self._signer = signer
        self._clock = clock
        self._bastions = {b.name: b for b in bastions}
        self._policy_recorded = False
        # Push mode's use case, set by the composition root when push is configured.
        self.push: PushRequests | None = None
        # Group commit for the grant hot path; None means one transaction per request.
        self.writer: GroupCommitWriter | None = None
        # Serials reserved ahead of need, to sign before the lock; None signs under it.
        self.serials: SerialPool | None = None

    # -- writes ---------------------------------------------------------------------------

    def record_policy_loaded(self, source: str) -> None:
        """Audit the policy's hash; done at start, and before the first grant if that failed."""
        event = AuditEvent(
            type="policy.loaded",
            details={
                "sha256": self.policy.sha256,
                "source": source,
                "rules": len(self.policy.document.rules),
            },
        )
        with transaction(self._engine) as conn:
            audit_store.append(conn, event, self._clock.now())
        self._policy_recorded = True

    def ensure_policy_recorded(self) -> None:
        """No decision without the deciding policy on record (fail closed)."""
        if not self._policy_recorded:
            self.record_policy_loaded("policy_file")

    def request_access(
        self,
        identity: Identity,
        request: AccessRequestInput,
        idempotency: IdempotencyKey | None = None,
    ) -> AccessRequestView:
        flow: Callable[[IdempotencyKey | None], AccessRequestView]
        if request.mode == "push":
            if self.push is None:
                raise ModeUnavailable("push mode is not configured on this server (push.*)")
            flow = self.push.prepare(identity, request)  # even.service.push_access
        else:
            checked = self._validate(identity, request)
            flow = functools.partial(self._request_access, identity, request, checked)
        if idempotency is not None:
            replay = self._claim(identity, idempotency)
            if replay is not None:
                return replay
        try:
            return flow(idempotency)
        except (Denied, PolicyRejected):
            raise  # the denial and its stored answer committed together
        except BaseException:
            if idempotency is not None:
                self._release(identity, idempotency)
            raise

    def _claim(self, identity: Identity, idem: IdempotencyKey) -> AccessRequestView | None:
        """Take the key, or replay its answer; another body or an unfinished first → error."""
        with transaction(self._engine) as conn:
            now = self._clock.now()
            stored = idempotency_store.find(conn, identity.username, idem.key)
            if stored is not None and now - stored.created < idempotency_store.KEY_LIFETIME:
                if stored.body_sha256 != idem.body_sha256:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used with another request body"
                    )
                if stored.state == "done" and stored.answer is not None:
                    return _replay(stored.answer)
                if now - stored.created < idempotency_store.ABANDONED_AFTER:
                    raise IdempotencyInFlight("the first request with this key is in flight")
            idempotency_store.claim(conn, identity.username, idem.key, idem.body_sha256, now)
        return None

    def _release(self, identity: Identity, idem: IdempotencyKey) -> None:
        try:
            with transaction(self._engine) as conn:
                idempotency_store.release(conn, identity.username, idem.key)
        except EvenError:
            pass  # the claim expires as abandoned; nothing was granted

    def _request_access(
        self,
        identity: Identity,
        request: AccessRequestInput,
        checked: _Validated,
        idempotency: IdempotencyKey | None,
    ) -> AccessRequestView:
        self.ensure_policy_recorded()
        prepared = self._prepare(identity, request, checked, idempotency)
        return self._answer(prepared, self._write(prepared.record))

    def _answer(self, prepared: _Prepared, granted: _Granted | None) -> AccessRequestView:
        """After the commit: raise the recorded refusal, or sign a deferred receipt."""
        if prepared.refusal is not None:
            raise prepared.refusal  # only after the denial record has committed
        assert granted is not None
        receipt = granted.receipt
        record = prepared.unsigned.get("record")
        if record is not None:
            receipt = self._signer.receipt(record["seq"], record["hash"])
        return _view(granted.row, receipt=receipt)

    def _prepare(
        self,
        identity: Identity,
        request: AccessRequestInput,
        checked: _Validated,
        idempotency: IdempotencyKey | None,
    ) -> _Prepared:
        """Decide (pure), sign where serials are at hand, and return the transaction work."""
        request_id = new_request_id()
        # Policy is pure: decide before taking the write lock, record inside it.
        refusal: Denied | PolicyRejected | None = None
        grant: Grant | None = None
        draft: _GrantDraft | None = None
        try:
            grant = self._decide(Subject(identity.username, identity.groups), request, checked)
        except (Denied, PolicyRejected) as exc:
            refusal = exc
        else:
            presigned = self._presign(identity, request, checked, request_id, grant)
            if presigned is not None:
                draft = _draft(presigned, identity, request, checked, request_id, grant)
        # Without an Idempotency-Key nothing stores the answer, so the receipt can wait.
        defer_receipt = idempotency is None
        unsigned: dict[str, dict[str, Any]] = {}
        # Canonicalised here, so that under the lock the record only needs its place.
        requested_event = SealTemplate(
            AuditEvent(
                type="access.requested",
                **_event_fields(identity, request, checked, request_id),
                details={
                    "mode": request.mode,
                    "fingerprint": checked.public_key.fingerprint,
                    "lifetime_minutes": request.lifetime_minutes,
                    "bastion": request.bastion,
                    "dev_issuer": identity.dev_issuer,
                },
            )
        )

        def record(conn: Connection) -> _Granted | None:
            now = self._clock.now()
            state = batch_state(conn)
            # In a group commit, the previous piece's last record is this one's head.
            previous = state.last_record if state is not None else None
            requested = audit_store.append(
                conn, requested_event, now, after=previous, insert=insert_row
            )
            granted = None
            if refusal is not None:
                last = self._record_denial(
                    conn, requested, identity, request, checked, request_id, refusal
                )
                answer: dict[str, Any] = {
                    "error": {
                        "type": type(refusal).__name__,
                        "code": refusal.code,
                        "message": refusal.message,
                        "extra": dict(refusal.extra),
                    }
                }
            else:
                assert grant is not None
                granted, last = self._grant(
                    conn,
                    requested,
                    identity,
                    request,
                    checked,
                    request_id,
                    grant,
                    now,
                    draft=draft,
                    sign_receipt=not defer_receipt,
                )
                if defer_receipt:
                    unsigned["record"] = last
                # Only an Idempotency-Key needs the stored answer (asdict is costly here).
                answer = {}
                if idempotency is not None:
                    answer = {"view": asdict(_view(granted.row, receipt=granted.receipt))}
            if idempotency is not None:
                # In the grant's own transaction: the answer exists exactly when the grant does.
                idempotency_store.finish(conn, identity.username, idempotency.key, answer)
            if state is not None:
                state.last_record = last
            return granted

        return _Prepared(request_id, refusal, record, unsigned)

    def _presign(
        self,
        identity: Identity,
        request: AccessRequestInput,
        checked: _Validated,
        request_id: str,
        grant: Grant,
    ) -> _Signed | None:
        """Sign with reserved serials before the lock, or None to sign under it."""
        if self.serials is None:
            return None
        reserved = self.serials.take(2 if grant.rule.bastion is not None else 1)
        if reserved is None:
            return None
        ca = reserved[0][1]
        serials = [serial for serial, _ in reserved]
        return self._sign(ca, serials, identity, request, checked, request_id, grant)

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
            and self._policy_recorded
            and self.writer is not None
        )
        if not common:
            return await asyncio.to_thread(self.request_access, identity, request, idempotency)
        checked = self._validate(identity, request)
        prepared = self._prepare(identity, request, checked, None)
        assert self.writer is not None
        view = await self.writer.run_async(prepared.record)
        return self._answer(prepared, view)

    def _write(self, work: Callable[[Connection], _T]) -> _T:
        """Run `work` in a write transaction: grouped with others' when a writer is set."""
        if self.writer is not None:
            return self.writer.run(work)
        with transaction(self._engine) as conn:
            return work(conn)

    def _validate(self, identity: Identity, request: AccessRequestInput) -> _Validated:
        """Certificate mode's checks (push mode has its own in push_access)."""
        if not is_hostname(request.hostname):
            raise InvalidRequest("hostname: lowercase DNS name required (no IP literals)")
        login = request.login if request.login is not None else identity.username
        if not is_login(login):
            raise InvalidRequest("login: must match ^[a-z_][a-z0-9_.-]{0,31}$")
        if request.bastion is not None and not is_bastion_name(request.bastion):
            raise InvalidRequest("bastion: not a valid bastion name")
        if request.public_key is None:
            raise InvalidRequest("public_key: required in certificate mode")
        public_key = parse_public_key(request.public_key)
        if self._ca_registry.is_configured_ca_key(public_key):
            raise InvalidRequest("public_key: the CA's own key cannot be certified")
        return _Validated(login=login, public_key=public_key)

    def _decide(self, subject: Subject, request: AccessRequestInput, checked: _Validated) -> Grant:
        rule = self.policy.decide(
            subject, hostname=request.hostname, login=checked.login, mode=request.mode
        )
        # The rule's bastion is authoritative: a client cannot route around it or add one.
        if request.bastion is not None and request.bastion != rule.bastion:
            raise BastionNotAllowed(f"bastion {request.bastion!r} is not allowed for this host")
        return self.policy.check(
            rule, reason=request.reason, lifetime_minutes=request.lifetime_minutes
        )

    def _record_denial(
        self,
        conn: Connection,
        after: dict[str, Any],
        identity: Identity,
        request: AccessRequestInput,
        checked: _Validated,
        request_id: str,
        error: EvenError,
    ) -> dict[str, Any]:
        """Record the denial; returns its audit record (this transaction's new head)."""
        now = self._clock.now()
        details: dict[str, Any] = {"code": error.code, "mode": request.mode}
        if "rule" in error.extra:
            details["rule"] = str(error.extra["rule"])
        base = _event_fields(identity, request, checked, request_id)
        denied = audit_store.append(
            conn,
            AuditEvent(type="access.denied", **base, details=details),
            now,
            after=after,
            insert=insert_row,
        )
        insert_row(
            conn,
            _INSERT_REQUEST,
            _request_row(
                id=request_id,
                status="DENIED",
                username=identity.username,
                login=checked.login,
                hostname=request.hostname,
                mode=request.mode,
                reason=request.reason,
                rule=details.get("rule"),
                bastion=request.bastion,
                lifetime_minutes=request.lifetime_minutes or 0,
                principals="[]",
                fingerprint=checked.public_key.fingerprint,
                status_reason=error.code,
                created=rfc3339(now),
                last_modified=rfc3339(now),
            ),
        )
        return denied

    def _grant(
        self,
        conn: Connection,
        after: dict[str, Any],
        identity: Identity,
        request: AccessRequestInput,
        checked: _Validated,
        request_id: str,
        grant: Grant,
        now: datetime,
        *,
        draft: _GrantDraft | None = None,
        sign_receipt: bool = True,
    ) -> tuple[_Granted, dict[str, Any]]:
        """Record the grant at `now` (the moment its request was recorded) from the `draft`
        made before the lock if its CA is still the active one, else signing now; returns its
        row and receipt, and its audit record (the new head). Without `sign_receipt` there is
        no receipt yet."""
        state = batch_state(conn)
        # The CA's state is read once per transaction (the write lock is held throughout).
        ca = state.memo.get("ca") if state is not None else None
        if ca is None:
            ca = self._ca_registry.signing_ca(conn)
            if state is not None:
                state.memo["ca"] = ca
        if (
            draft is not None
            and draft.signed.ca_fingerprint == ca.active.fingerprint
            # The CA may have gained keys since the early signature: none may be certified.
            and not ca.is_ca_key(checked.public_key)
        ):
            for serial_row in draft.serial_rows:
                insert_row(conn, _INSERT_SERIAL, serial_row)
        else:  # no reserved serials, or the CA rotated since: draw and sign under the lock
            valid_before = rfc3339(now + timedelta(minutes=grant.lifetime_minutes))
            fingerprint = ca.active.fingerprint
            serials = [_next_serial(conn, request_id, "target", valid_before, fingerprint)]
            if grant.rule.bastion is not None:
                serials.append(_next_serial(conn, request_id, "bastion", valid_before, fingerprint))
            signed = self._sign(ca, serials, identity, request, checked, request_id, grant, now)
            draft = _draft(signed, identity, request, checked, request_id, grant)
        record = audit_store.append(conn, draft.granted, now, after=after, insert=insert_row)
        stamp = rfc3339(now)
        row = {**draft.row, "created": stamp, "last_modified": stamp}
        insert_row(conn, _INSERT_REQUEST, row)
        receipt = self._signer.receipt(record["seq"], record["hash"]) if sign_receipt else None
        return _Granted(row, receipt), record

    def _sign(
        self,
        ca: UserCA,
        serials: list[int],
        identity: Identity,
        request: AccessRequestInput,
        checked: _Validated,
        request_id: str,
        grant: Grant,
        now: datetime | None = None,
    ) -> _Signed:
        """The grant's certificate (and the bastion's, with the second serial)."""
        now = now or self._clock.now()
        rule = grant.rule
        valid_after = now - CLOCK_SKEW
        valid_before = now + timedelta(minutes=grant.lifetime_minutes)
        principals = _principals(rule, checked.login, request.hostname)
        certificate = ca.sign(
            CertificateRequest(
                public_key=checked.public_key,
                serial=serials[0],
                key_id=f"even:{request_id}:{identity.username}",
                principals=principals,
                valid_after=valid_after,
                valid_before=valid_before,
                extensions=rule.extensions,
                critical_options=_critical_options(rule),
            )
        )
        bastion_serial = bastion_certificate = None
        if rule.bastion is not None:
            bastion_serial = serials[1]
            bastion_certificate = ca.sign(
                CertificateRequest(
                    public_key=checked.public_key,
                    serial=bastion_serial,
                    key_id=f"even:{request_id}:{identity.username}:bastion",
                    # One hop only: the bastion's `odd principals` opens <target>:22 for it.
                    principals=[f"{identity.username}@{rule.bastion}/{request.hostname}"],
                    valid_after=valid_after,
                    valid_before=valid_before,
                    extensions=["permit-port-forwarding"],
                    critical_options=[
                        ("force-command", BASTION_FORCE_COMMAND),
                        *_critical_options(rule),
                    ],
                )
            )
        return _Signed(
            serial=serials[0],
            certificate=certificate,
            bastion_serial=bastion_serial,
            bastion_certificate=bastion_certificate,
            ca_fingerprint=ca.active.fingerprint,
            valid_after=valid_after,
            valid_before=valid_before,
            principals=principals,
        )

    # -- reads ----------------------------------------------------------------------------

    def get(self, identity: Identity, request_id: str) -> AccessRequestView:
        with read_only(self._engine) as conn:
            row = conn.execute(select(_requests).where(_requests.c.id == request_id)).first()
        # Someone else's request is indistinguishable from a missing one.
        if row is None or not self._may_read(identity, row.username):
            raise NotFound("no such access request")
        return _view(row._mapping)

    def list_requests(
        self, identity: Identity, filters: ListFilters
    ) -> tuple[list[AccessRequestView], int | None]:
        query = select(_requests)
        if not self._privileged(identity):
            query = query.where(_requests.c.username == identity.username)
        elif filters.username is not None:
            query = query.where(_requests.c.username == filters.username)
        for column, value in (
            ("status", filters.status),
            ("hostname", filters.hostname),
            ("login", filters.login),
        ):
            if value is not None:
                query = query.where(_requests.c[column] == value)
        query = query.order_by(_requests.c.created.desc(), _requests.c.id)
        with read_only(self._engine) as conn:
            rows = conn.execute(query.limit(filters.limit + 1).offset(filters.offset)).all()
        items = [_view(r._mapping) for r in rows[: filters.limit]]
        more = len(rows) > filters.limit
        return items, (filters.offset + filters.limit) if more else None

    def count(self) -> int:
        with read_only(self._engine) as conn:
            return int(conn.execute(select(func.count()).select_from(_requests)).scalar_one())

    def roles(self, identity: Identity) -> list[str]:
        return self.policy.roles_for(Subject(identity.username, identity.groups))

    def _privileged(self, identity: Identity) -> bool:
        return bool(PRIVILEGED_READ_ROLES & set(self.roles(identity)))

    def _may_read(self, identity: Identity, owner: str) -> bool:
        return owner == identity.username or self._privileged(identity)

    def allowed(self, identity: Identity) -> list[dict[str, Any]]:
        subject = Subject(identity.username, identity.groups)
        return [
            {
                "rule": rule.name,
                "hosts": list(rule.hosts),
                "logins": self.policy.logins_for(rule, subject),
                "modes": list(rule.modes),
                "max_lifetime_minutes": self.policy.max_lifetime(rule),
                "bastion": rule.bastion,
            }
            for rule in self.policy.rules_for(subject)
        ]


_REPLAYABLE_ERRORS: dict[str, type[EvenError]] = {
    cls.__name__: cls
    for cls in (NoMatchingRule, LoginNotAllowed, BastionNotAllowed, ReasonRejected, LifetimeTooLong)
}


def _replay(answer: dict[str, Any]) -> AccessRequestView:
    if "view" in answer:
        return AccessRequestView(**answer["view"])
    error = answer["error"]
    cls = _REPLAYABLE_ERRORS.get(error["type"], Denied)
    replayed = cls(error["message"], **error.get("extra", {}))
    replayed.code = error["code"]
    raise replayed


_REQUEST_COLUMNS = tuple(column.name for column in _requests.columns)


def _request_row(**values: Any) -> dict[str, Any]:
    """A full access_requests row (absent columns NULL), so one compiled INSERT fits all."""
    return {name: values.get(name) for name in _REQUEST_COLUMNS}


def _event_fields(
    identity: Identity, request: AccessRequestInput, checked: _Validated, request_id: str
) -> dict[str, Any]:
    return {
        "username": identity.username,
        "login": checked.login,
        "hostname": request.hostname,
        "request_id": request_id,
        "reason": request.reason,
    }


def _principals(rule: Rule, login: str, hostname: str) -> list[str]:
    return [login] if rule.principals == "login" else [f"{login}@{hostname}"]


def _critical_options(rule: Rule) -> list[tuple[str, str]]:
    if rule.source_addresses:
        return [("source-address", ",".join(rule.source_addresses))]
    return []


def _next_serial(
    conn: Connection, request_id: str, purpose: str, valid_before: str, ca_fingerprint: str
) -> int:
    result = conn.execute(
        _INSERT_SERIAL,
        {
            "request_id": request_id,
            "purpose": purpose,
            "valid_before": valid_before,
            "ca_fingerprint": ca_fingerprint,
        },
    )
    serial = result.inserted_primary_key[0] if result.inserted_primary_key else None
    if not isinstance(serial, int) or not 1 <= serial < 2**53:
        raise InvalidRequest("serial space exhausted")
    return serial


def _draft(
    signed: _Signed,
    identity: Identity,
    request: AccessRequestInput,
    checked: _Validated,
    request_id: str,
    grant: Grant,
) -> _GrantDraft:
    rule = grant.rule
    key_id = f"even:{request_id}:{identity.username}"
    details: dict[str, Any] = {
        "serial": signed.serial,
        "key_id": key_id,
        "fingerprint": checked.public_key.fingerprint,
        "principals": signed.principals,
        "valid_after": signed.valid_after_text,
        "valid_before": signed.valid_before_text,
        "rule": rule.name,
        "mode": request.mode,
        "bastion": rule.bastion,
        "bastion_serial": signed.bastion_serial,
        "principal_mode": rule.principals,
        "lifetime_minutes": grant.lifetime_minutes,
        "extensions": list(rule.extensions),
        "source_addresses": list(rule.source_addresses),
        "ca_fingerprint": signed.ca_fingerprint,
    }
    if identity.dev_issuer:
        details["dev_issuer"] = True
    base = _event_fields(identity, request, checked, request_id)
    row = _request_row(
        id=request_id,
        status="GRANTED",
        username=identity.username,
        login=checked.login,
        hostname=request.hostname,
        mode=request.mode,
        reason=request.reason,
        rule=rule.name,
        bastion=rule.bastion,
        lifetime_minutes=grant.lifetime_minutes,
        fingerprint=checked.public_key.fingerprint,
        serial=signed.serial,
        key_id=key_id,
        principals=json.dumps(signed.principals),
        valid_after=signed.valid_after_text,
        valid_before=signed.valid_before_text,
        certificate=signed.certificate,
        bastion_serial=signed.bastion_serial,
        bastion_certificate=signed.bastion_certificate,
    )
    serials = [(signed.serial, "target")]
    if signed.bastion_serial is not None:
        serials.append((signed.bastion_serial, "bastion"))
    serial_rows = [
        {
            "serial": serial,
            "request_id": request_id,
            "purpose": purpose,
            "valid_before": signed.valid_before_text,
            "ca_fingerprint": signed.ca_fingerprint,
        }
        for serial, purpose in serials
    ]
    return _GrantDraft(
        signed=signed,
        granted=SealTemplate(AuditEvent(type="access.granted", **base, details=details)),
        row=row,
        serial_rows=serial_rows,
    )


def _view(row: Any, *, receipt: dict[str, Any] | None = None) -> AccessRequestView:
    return AccessRequestView(
        id=row["id"],
        status=row["status"],
        username=row["username"],
        login=row["login"],
        hostname=row["hostname"],
        mode=row["mode"],
        reason=row["reason"],
        rule=row["rule"],
        certificate=row["certificate"],
        serial=row["serial"],
        key_id=row["key_id"],
        principals=json.loads(row["principals"]),
        valid_after=row["valid_after"],
        valid_before=row["valid_before"],
        bastion=row["bastion"],
        bastion_certificate=row["bastion_certificate"],
        bastion_serial=row["bastion_serial"],
        lifetime_minutes=row["lifetime_minutes"],
        status_reason=row["status_reason"],
        created=row["created"],
        last_modified=row["last_modified"],
        receipt=receipt,
    )
