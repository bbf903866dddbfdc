"""The certificate-mode grant (SPEC §4): a draft before any lock, one unit of work under it.

Fail closed: inside one transaction the request is recorded (`access.requested`), the
serials' rows are written and `access.granted` is appended; the certificate is returned only
after that transaction has committed. A denial commits its `access.denied` record (and any
Idempotency-Key answer) before the error reaches the client.

Before the lock, `draft` decides (policy is pure) and, where the process holds serials reserved
ahead of need (even.service.serial_pool), signs: the resulting `CertificateDraft` is the unit
of work the writer commits. Under the lock it keeps the early signature only if the CA that
signed is still the active one (and the key is none of its keys); otherwise it draws serials
and signs there. The receipt (a signature over the committed record) is signed after the
commit unless an Idempotency-Key stores the answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy.engine import Engine

from audit.chain import SealTemplate
from audit.signing import AuditSigner
from even.ca import UserCA
from even.clock import Clock, rfc3339
from even.errors import Denied, InvalidRequest, PolicyRejected
from even.identity import Identity
from even.ids import new_request_id
from even.policy import Grant
from even.service.admission import Asked, PolicyGate, check_names, record_denial
from even.service.ca_registry import CaRegistry
from even.service.grant_draft import (
    GrantRecords,
    grant_extra,
    grant_records,
    requested_event,
    sign,
)
from even.service.idempotency import IdempotencyKey, finish, refusal_answer
from even.service.models import AccessRequestInput, AccessRequestView
from even.service.pending import needs_approval, open_review, record_pending
from even.service.serial_pool import SerialPool
from even.service.views import view
from even.sshkeys import ParsedPublicKey, parse_public_key
from even.store import access_requests
from even.store.unit_of_work import Transaction, commit
from even.store.writer import GroupCommitWriter

_CA = "ca"  # the transaction's memo of the signing CA


class Checked(NamedTuple):
    login: str
    public_key: ParsedPublicKey


class Committed(NamedTuple):
    """What a grant's unit of work leaves for its answer: the row, the receipt signed in it
    (if an Idempotency-Key stored the answer) and the `access.granted` record (for a request
    left waiting for approvers: `access.pending`, and no receipt is signed)."""

    row: dict[str, Any]
    receipt: dict[str, Any] | None
    record: dict[str, Any]
    extras: dict[str, Any] | None = None  # the view's approval/emergency fields


@dataclass(frozen=True, slots=True)
class CertificateDraft:
    """A decided request and what it will write: the unit of work for one grant or denial."""

    asked: Asked
    public_key: ParsedPublicKey
    requested: SealTemplate
    refusal: Denied | PolicyRejected | None
    grant: Grant | None
    presigned: GrantRecords | None  # signed before the lock with reserved serials
    idempotency: IdempotencyKey | None
    grants: CertificateGrants
    pending: bool = False  # the rule needs approvers: record it, sign nothing

    def apply(self, tx: Transaction) -> Committed | None:
        return self.grants.record(tx, self)


class CertificateGrants:
    def __init__(
        self,
        *,
        engine: Engine,
        gate: PolicyGate,
        ca_registry: CaRegistry,
        signer: AuditSigner,
        clock: Clock,
        writer: GroupCommitWriter | None = None,
        serials: SerialPool | None = None,
    ) -> None:
        self._engine = engine
        self._gate = gate
        self._ca_registry = ca_registry
        self._signer = signer
        self._clock = clock
        # Group commit for the hot path (GroupCommitWriter); None: one transaction per request.
        self._writer = writer
        # Serials reserved ahead of need, to sign before the lock; None signs under it.
        self._serials = serials

    @property
    def grouped(self) -> bool:
        return self._writer is not None

    def validate(self, identity: Identity, request: AccessRequestInput) -> Checked:
        """Certificate mode's checks; 422s raise here, before an Idempotency-Key is taken."""
        login = check_names(identity, request)
        if request.public_key is None:
            raise InvalidRequest("public_key: required in certificate mode")
        public_key = parse_public_key(request.public_key)
        if self._ca_registry.is_configured_ca_key(public_key):
            raise InvalidRequest("public_key: the CA's own key cannot be certified")
        return Checked(login, public_key)

    def draft(
        self,
        identity: Identity,
        request: AccessRequestInput,
        checked: Checked,
        idempotency: IdempotencyKey | None,
    ) -> CertificateDraft:
        """Decide (pure), sign where serials are at hand: the unit to commit."""
        login, public_key = checked
        asked = Asked(identity, request, login, new_request_id())
        refusal: Denied | PolicyRejected | None = None
        grant: Grant | None = None
        presigned: GrantRecords | None = None
        try:
            grant = self._gate.decide(identity, request, login)
        except (Denied, PolicyRejected) as exc:
            refusal = exc
        pending = grant is not None and needs_approval(grant, request)
        if grant is not None and not pending:
            presigned = self._presign(asked, public_key, grant)
        requested = requested_event(asked, public_key.fingerprint)
        return CertificateDraft(
            asked, public_key, requested, refusal, grant, presigned, idempotency, self, pending
        )

    def grant(
        self,
        identity: Identity,
        request: AccessRequestInput,
        checked: Checked,
        idempotency: IdempotencyKey | None,
    ) -> AccessRequestView:
        self._gate.ensure_recorded()
        draft = self.draft(identity, request, checked, idempotency)
        if self._writer is not None:
            committed = self._writer.commit(draft)
        else:
            committed = commit(self._engine, draft)
        return self.answer(draft, committed)

    async def grant_async(
        self, identity: Identity, request: AccessRequestInput
    ) -> AccessRequestView:
        """The hot path on an event loop: pure steps inline, the commit awaited (no thread).
        Only with a writer, the policy on record and no Idempotency-Key (see AccessService)."""
        assert self._writer is not None
        draft = self.draft(identity, request, self.validate(identity, request), None)
        return self.answer(draft, await self._writer.commit_async(draft))

    def answer(self, draft: CertificateDraft, committed: Committed | None) -> AccessRequestView:
        """After the commit: raise the recorded refusal, or sign a deferred receipt."""
        if draft.refusal is not None:
            raise draft.refusal  # only after the denial record has committed
        assert committed is not None
        if draft.pending:
            return view(committed.row, extras=committed.extras)  # 202: no credential yet
        receipt = committed.receipt
        if receipt is None:
            receipt = self._signer.receipt(committed.record["seq"], committed.record["hash"])
        return view(committed.row, receipt=receipt, extras=committed.extras)

    def _presign(
        self, asked: Asked, public_key: ParsedPublicKey, grant: Grant
    ) -> GrantRecords | None:
        """Sign with reserved serials before the lock, or None to sign under it."""
        if self._serials is None:
            return None
        reserved = self._serials.take(2 if grant.rule.bastion is not None else 1)
        if reserved is None:
            return None
        ca = reserved[0][1]
        signed = sign(ca, [s for s, _ in reserved], asked, public_key, grant, self._clock.now())
        return grant_records(signed, asked, public_key, grant, grant_extra(asked))

    # -- under the write lock --------------------------------------------------------------

    def record(self, tx: Transaction, draft: CertificateDraft) -> Committed | None:
        """The draft's unit of work: the request, then its denial or its grant."""
        now = self._clock.now()
        asked = draft.asked
        tx.append(draft.requested, now)
        if draft.refusal is not None:
            record_denial(
                tx, asked, draft.refusal, fingerprint=draft.public_key.fingerprint, now=now
            )
            finish(tx, asked.identity.username, draft.idempotency, refusal_answer(draft.refusal))
            return None
        grant = draft.grant
        assert grant is not None
        if draft.pending:
            return self._pend(tx, draft, grant, now)
        records = self._fresh(tx, asked, draft.public_key, grant, draft.presigned, now)
        record = tx.append(records.granted, now)
        stamp = rfc3339(now)
        row = {**records.row, "created": stamp, "last_modified": stamp}
        access_requests.insert(tx, row)
        extras = None
        if asked.request.emergency:
            open_review(tx, asked, grant, now)
            extras = {"emergency": True}
        receipt = None
        if draft.idempotency is not None:
            # The stored answer needs the receipt now (asdict is costly: only here).
            receipt = self._signer.receipt(record["seq"], record["hash"])
            answer = {"view": asdict(view(row, receipt=receipt, extras=extras))}
            finish(tx, asked.identity.username, draft.idempotency, answer)
        return Committed(row, receipt, record, extras)

    def _pend(
        self, tx: Transaction, draft: CertificateDraft, grant: Grant, now: datetime
    ) -> Committed:
        """The rule needs approvers: record the request as pending, sign nothing."""
        public_key = draft.public_key
        row, approval, record = record_pending(
            tx,
            draft.asked,
            grant,
            fingerprint=public_key.fingerprint,
            public_keys=[public_key.openssh],
            now=now,
        )
        extras = {"approval": approval}
        if draft.idempotency is not None:
            answer = {"view": asdict(view(row, extras=extras))}
            finish(tx, draft.asked.identity.username, draft.idempotency, answer)
        return Committed(row, None, record, extras)

    def grant_in(
        self,
        tx: Transaction,
        asked: Asked,
        public_key: ParsedPublicKey,
        grant: Grant,
        now: datetime,
        extra: dict[str, Any],
    ) -> tuple[GrantRecords, dict[str, Any]]:
        """The ordinary grant inside another use case's unit of work (the last approval):
        sign under the lock with lifetime from `now`, append `access.granted` (with `extra`
        details). The caller writes the row (it exists already)."""
        records = self._fresh(tx, asked, public_key, grant, None, now, extra)
        return records, tx.append(records.granted, now)

    def _fresh(
        self,
        tx: Transaction,
        asked: Asked,
        public_key: ParsedPublicKey,
        grant: Grant,
        presigned: GrantRecords | None,
        now: datetime,
        extra: dict[str, Any] | None = None,
    ) -> GrantRecords:
        """The early signature if its CA is still the active one, else signed now."""
        ca: UserCA = tx.cached(_CA, self._ca_registry.signing_ca)
        if (
            presigned is not None
            and presigned.signed.ca_fingerprint == ca.active.fingerprint
            # The CA may have gained keys since the early signature: none may be certified.
            and not ca.is_ca_key(public_key)
        ):
            for serial_row in presigned.serial_rows:
                access_requests.insert_serial(tx, serial_row)
            return presigned
        if ca.is_ca_key(public_key):
            raise InvalidRequest("public_key: the CA's own key cannot be certified")
        # No reserved serials, or the CA rotated since: draw and sign under the lock.
        valid_before = rfc3339(now + timedelta(minutes=grant.lifetime_minutes))
        fingerprint = ca.active.fingerprint
        purposes = ["target"] if grant.rule.bastion is None else ["target", "bastion"]
        serials = []
        for purpose in purposes:
            serial = access_requests.draw_serial(
                tx, asked.request_id, purpose, valid_before, fingerprint
            )
            if serial is None:
                raise InvalidRequest("serial space exhausted")
            serials.append(serial)
        signed = sign(ca, serials, asked, public_key, grant, now)
        return grant_records(signed, asked, public_key, grant, extra or grant_extra(asked))
