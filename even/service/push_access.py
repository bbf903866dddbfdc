"""The push-mode grant (SPEC §5): push keys to a bastion and a host, on the record first.

Fail closed, in three units of work, never holding the writer lock while talking to hosts:
1. `access.requested`, the policy decision, then either `access.denied` (DENIED) or
   `access.push_started` (PUSHING) carrying the plan — fingerprints, login, hosts, expiry,
   grant ids. It commits before any host is touched, so every line that ever reaches a host
   is on record first.
2. The push (`even.push.runner`): all-or-nothing across hosts; a failure revokes whatever
   was pushed before it is reported.
3. `access.granted` (GRANTED) or `access.failed` (FAILED; 502 to the client). If the success
   cannot be committed, the pushed lines are removed before the error (503) goes out; if the
   grant was meanwhile reconciled (the push outlived push.timeout_seconds), they are removed
   too and nothing is granted.
Whatever dies in between (the process, the database) leaves a PUSHING row with its
`push_started` record: `even.service.jobs` reconciles it. A failure whose own clean-up left
lines on a host is FAILED with `cleanup_incomplete`: the reconciler keeps removing them until
every host is clean (recorded then), and the request can be revoked meanwhile.

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

from sqlalchemy.engine import Engine

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
from even.policy import Grant, Rule
from even.push.commands import floor_seconds, odd_expiry
from even.push.plan import PushKey, PushPlan, plan_push
from even.push.runner import GrantFailed, PushRunner
from even.service.admission import Asked, PolicyGate, check_names, record_denial
from even.service.idempotency import IdempotencyKey, finish, refusal_answer
from even.service.models import AccessRequestInput, AccessRequestView
from even.service.pending import needs_approval, open_review, record_pending
from even.service.push_lines import PushLines
from even.service.user_keys import UserKeyService
from even.service.views import view
from even.sshkeys import ParsedPublicKey, parse_public_key
from even.store import access_requests
from even.store.unit_of_work import Transaction, commit_work

log = logging.getLogger("even.push")

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
    grant: Grant


class PushAccessService:
    def __init__(
        self,
        *,
        engine: Engine,
        gate: PolicyGate,
        keys: UserKeyService,
        runner: PushRunner,
        lines: PushLines,
        signer: AuditSigner,
        clock: Clock,
        push_user: str,
        timeout_seconds: float,
    ) -> None:
        self._engine = engine
        self._gate = gate
        self._keys = keys
        self._runner = runner
        self.lines = lines
        self._signer = signer
        self._clock = clock
        self._push_user = push_user
        self.timeout_seconds = timeout_seconds

    def close(self) -> None:
        self._runner.close()

    def prepare(self, identity: Identity, request: AccessRequestInput) -> Flow:
        """Validate (422s raise here, before an Idempotency-Key is taken); return the flow."""
        checked = self._validate(identity, request)
        return functools.partial(self._request, identity, request, checked)

    def _validate(self, identity: Identity, request: AccessRequestInput) -> _Checked:
        login = check_names(identity, request)
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
        self._gate.ensure_recorded()
        asked = Asked(identity, request, checked.login, new_request_id())
        refusal: EvenError | None = None
        try:
            grant = self._decide(identity, request, checked.login)
        except (Denied, PolicyRejected) as exc:
            refusal = exc

        def begin(tx: Transaction) -> _Started | AccessRequestView | None:
            now = self._clock.now()
            tx.append(self._event("access.requested", asked, self._requested(asked, checked)), now)
            if refusal is not None:
                fingerprint = checked.fingerprints[0]
                record_denial(tx, asked, refusal, fingerprint=fingerprint, now=self._clock.now())
                finish(tx, identity.username, idempotency, refusal_answer(refusal))
                return None
            if needs_approval(grant, request):
                return self._pend(tx, asked, checked, grant, now, idempotency)
            return self._start(tx, asked, checked, grant, now)

        started = commit_work(self._engine, begin)
        if started is None:
            assert refusal is not None
            raise refusal  # only after the denial record has committed
        if isinstance(started, AccessRequestView):
            return started  # 202: waits for approvers, nothing pushed
        return self._push_and_record(asked, checked, started, idempotency)

    def _pend(
        self,
        tx: Transaction,
        asked: Asked,
        checked: _Checked,
        grant: Grant,
        now: datetime,
        idempotency: IdempotencyKey | None,
    ) -> AccessRequestView:
        row, approval, _ = record_pending(
            tx,
            asked,
            grant,
            fingerprint=checked.fingerprints[0],
            public_keys=[k.openssh for k in checked.keys],
            now=now,
        )
        pending = view(row, extras={"approval": approval})
        finish(tx, asked.identity.username, idempotency, {"view": asdict(pending)})
        return pending

    def start_approved(
        self,
        tx: Transaction,
        asked: Asked,
        stored: dict[str, Any],
        grant: Grant,
        now: datetime,
        approvers: list[str],
    ) -> tuple[Asked, _Checked, _Started]:
        """The last approval of a push request, inside its unit of work: the push user
        check and `access.push_started` (PUSHING), exactly as a direct push grant's."""
        if asked.login == self._push_user:
            raise LoginNotAllowed(f"login {asked.login!r} is Even's push user")
        keys = tuple(parse_public_key(k) for k in stored.get("public_keys") or [])
        if not keys:
            raise NoRegisteredKeys("the pending request holds no key to push")
        checked = _Checked(login=asked.login, keys=keys)
        started = self._start(tx, asked, checked, grant, now, approvers=approvers)
        return asked, checked, started

    def finish_approved(self, asked: Asked, checked: _Checked, started: _Started) -> None:
        """After the approval committed: push, then record the outcome (as a direct grant)."""
        self._push_and_record(asked, checked, started, None)

    def _push_and_record(
        self,
        asked: Asked,
        checked: _Checked,
        started: _Started,
        idempotency: IdempotencyKey | None,
    ) -> AccessRequestView:
        try:
            self._runner.grant(
                started.plan, checked.push_keys, started.expires, timeout=self.timeout_seconds
            )
        except GrantFailed as failure:
            self._record_failure(asked, checked, failure)
        return self._record_success(asked, checked, started, idempotency)

    def _decide(self, identity: Identity, request: AccessRequestInput, login: str) -> Grant:
        # The push user's own key file is not the managed one; a key for it would be a
        # login able to run odd itself. Refused whatever the policy says.
        if login == self._push_user:
            raise LoginNotAllowed(f"login {login!r} is Even's push user and is never granted")

        def vet(rule: Rule) -> None:
            if rule.bastion is not None and identity.username == self._push_user:
                raise LoginNotAllowed("the requester's bastion account is Even's push user")

        return self._gate.decide(identity, request, login, vet=vet)

    @staticmethod
    def _requested(asked: Asked, checked: _Checked) -> dict[str, Any]:
        return {
            "mode": "push",
            "fingerprint": checked.fingerprints[0],
            "fingerprints": checked.fingerprints,
            "lifetime_minutes": asked.request.lifetime_minutes,
            "bastion": asked.request.bastion,
            "dev_issuer": asked.identity.dev_issuer,
        }

    def _start(
        self,
        tx: Transaction,
        asked: Asked,
        checked: _Checked,
        grant: Grant,
        now: datetime,
        *,
        approvers: list[str] | None = None,
    ) -> _Started:
        """`access.push_started` and the PUSHING row (updated in place after approvals)."""
        rule = grant.rule
        identity, request = asked.identity, asked.request
        # Rounded down: sshd's expiry-time has seconds, and must never outlast the grant.
        expires = floor_seconds(now + timedelta(minutes=grant.lifetime_minutes))
        plan = plan_push(
            request_id=asked.request_id,
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
        if request.emergency:
            details["emergency"] = True
        if approvers is not None:
            details["approvers"] = approvers
        started = {**details, "push": plan.as_json()}
        tx.append(self._event("access.push_started", asked, started), self._clock.now())
        values = access_requests.row(
            id=asked.request_id,
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
            principals="[]",
            valid_after=rfc3339(now),
            valid_before=rfc3339(expires),
            created=rfc3339(now),
            last_modified=rfc3339(now),
        )
        if approvers is None:
            access_requests.insert(tx, values)
        else:
            del values["id"], values["created"]
            access_requests.set_status(tx, asked.request_id, **values)
        return _Started(plan=plan, expires=expires, details=details, grant=grant)

    def _record_success(
        self,
        asked: Asked,
        checked: _Checked,
        started: _Started,
        idempotency: IdempotencyKey | None,
    ) -> AccessRequestView:
        def outcome(tx: Transaction) -> AccessRequestView | None:
            row = access_requests.find(tx, asked.request_id)
            if row is None or row["status"] != "PUSHING":
                return None
            granted = self._grant(tx, asked, started)
            # With the grant: the stored answer exists exactly when the grant does.
            finish(tx, asked.identity.username, idempotency, {"view": asdict(granted)})
            return granted

        try:
            answer = commit_work(self._engine, outcome)
        except BaseException:
            # No committed outcome, so no grant: take the lines back before answering.
            self.lines.undo(started.plan, asked.request_id)
            raise
        if answer is None:
            # The reconciler got here first (the push outlived push.timeout_seconds).
            self.lines.undo(started.plan, asked.request_id)
            raise PushFailed("the push took longer than allowed and was undone; nothing granted")
        return answer

    def _grant(self, tx: Transaction, asked: Asked, started: _Started) -> AccessRequestView:
        now = self._clock.now()
        record = tx.append(self._event("access.granted", asked, started.details), now)
        access_requests.set_status(
            tx, asked.request_id, status="GRANTED", last_modified=rfc3339(now)
        )
        extras = None
        if asked.request.emergency:
            open_review(tx, asked, started.grant, now)
            extras = {"emergency": True}
        granted = access_requests.find(tx, asked.request_id)
        assert granted is not None
        receipt = self._signer.receipt(record["seq"], record["hash"])
        return view(granted, receipt=receipt, extras=extras)

    def _record_failure(self, asked: Asked, checked: _Checked, failure: GrantFailed) -> None:
        """Commit `access.failed` and raise PushFailed (502); StoreUnavailable (503) if it
        cannot be committed (the reconciler then closes the row)."""
        cause = failure.cause

        def failed(tx: Transaction) -> None:
            now = self._clock.now()
            row = access_requests.find(tx, asked.request_id)
            if row is None or row["status"] != "PUSHING":
                return
            details: dict[str, Any] = {
                "mode": "push",
                "code": PushFailed.code,
                "error": str(cause),
                "host": cause.host,
                "cleanup": "incomplete" if failure.leftovers else "clean",
                "leftover_hosts": failure.leftovers,
                "fingerprints": checked.fingerprints,
            }
            tx.append(self._event("access.failed", asked, details), now)
            # Lines left behind keep it on the reconciler's list (and revocable) until clean.
            why = access_requests.CLEANUP_INCOMPLETE if failure.leftovers else None
            access_requests.set_status(
                tx,
                asked.request_id,
                status="FAILED",
                status_reason=why or f"push_failed: {cause.host}",
                last_modified=rfc3339(now),
            )

        commit_work(self._engine, failed)
        log.warning("push %s failed: %s (left on: %s)", asked.request_id, cause, failure.leftovers)
        message = f"could not push the key: {cause}; nothing was granted"
        if failure.leftovers:
            message += (
                f" (a line may remain on {', '.join(failure.leftovers)} until Even removes it;"
                " revoke the request to retry now)"
            )
        raise PushFailed(message) from cause

    @staticmethod
    def _event(record_type: str, asked: Asked, details: dict[str, Any]) -> AuditEvent:
        return AuditEvent(type=record_type, **asked.event_fields(), details=details)


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
