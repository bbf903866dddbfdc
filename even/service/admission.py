"""What both grant modes share before and around a decision: names, policy, denials.

- `check_names`: the request's hostname, login and bastion against even.names (SPEC §1); the
  login defaults to the requester's username. 422s raise here, before anything is recorded.
- `PolicyGate`: the loaded policy, its `policy.loaded` record (no decision without the
  deciding policy on record: fail closed), the decision with the bastion rule (a client
  cannot route around the rule's bastion or add one), and the read-side role checks.
- `Asked`: the facts every record of one request repeats; `record_denial` writes a refusal
  (`access.denied` and the DENIED row) into the unit of work that recorded the request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from audit.chain import AuditEvent
from even.clock import Clock, rfc3339
from even.errors import (
    ApprovalRequired,
    Denied,
    EmergencyNotAllowed,
    EvenError,
    InvalidRequest,
    LifetimeTooLong,
)
from even.identity import Identity
from even.names import is_bastion_name, is_hostname, is_login, is_self_name
from even.policy import Grant, Policy, Rule, Subject
from even.service.models import AccessRequestInput
from even.store import access_requests
from even.store.unit_of_work import Transaction, commit_work

PRIVILEGED_READ_ROLES = frozenset({"auditor", "admin"})


class BastionNotAllowed(Denied):
    code = "bastion_not_allowed"


class ModeUnavailable(InvalidRequest):
    code = "mode_unavailable"


def check_names(identity: Identity, request: AccessRequestInput) -> str:
    """The request's login once hostname, login and bastion are well formed; else 422."""
    if not is_hostname(request.hostname):
        raise InvalidRequest("hostname: lowercase DNS name required (no IP literals)")
    if is_self_name(request.hostname):
        raise InvalidRequest("hostname: names every machine; use the host's own name")
    login = request.login if request.login is not None else identity.username
    if not is_login(login):
        raise InvalidRequest("login: must match ^[a-z_][a-z0-9_.-]{0,31}$")
    if request.bastion is not None and not is_bastion_name(request.bastion):
        raise InvalidRequest("bastion: not a valid bastion name")
    return login


@dataclass(frozen=True, slots=True)
class Asked:
    """One request's facts, as every record and row of it repeats them."""

    identity: Identity
    request: AccessRequestInput
    login: str
    request_id: str

    def event_fields(self) -> dict[str, Any]:
        return {
            "username": self.identity.username,
            "login": self.login,
            "hostname": self.request.hostname,
            "request_id": self.request_id,
            "reason": self.request.reason,
        }


class PolicyGate:
    def __init__(self, *, engine: Engine, policy: Policy, clock: Clock) -> None:
        self._engine = engine
        self.policy = policy
        self._clock = clock
        self.recorded = False

    def record_loaded(self, source: str) -> None:
        """Audit the policy's hash; done at start, and before the first grant if that failed."""
        event = AuditEvent(
            type="policy.loaded",
            details={
                "sha256": self.policy.sha256,
                "source": source,
                "rules": len(self.policy.document.rules),
            },
        )
        commit_work(self._engine, lambda tx: tx.append(event, self._clock.now()))
        self.recorded = True

    def ensure_recorded(self) -> None:
        """No decision without the deciding policy on record (fail closed)."""
        if not self.recorded:
            self.record_loaded("policy_file")

    def decide(
        self,
        identity: Identity,
        request: AccessRequestInput,
        login: str,
        *,
        vet: Callable[[Rule], None] | None = None,
    ) -> Grant:
        """The grant the policy allows, or a Denied/PolicyRejected to record.

        `vet` adds a mode's own refusal once the rule is known (before reason and lifetime).
        """
        subject = Subject(identity.username, identity.groups)
        rule = self.policy.decide(
            subject, hostname=request.hostname, login=login, mode=request.mode
        )
        # The rule's bastion is authoritative: a client cannot route around it or add one.
        if request.bastion is not None and request.bastion != rule.bastion:
            raise BastionNotAllowed(f"bastion {request.bastion!r} is not allowed for this host")
        if vet is not None:
            vet(rule)
        if not request.emergency:
            if rule.approval is not None and not request.can_wait:
                raise ApprovalRequired(
                    f"rule {rule.name}: this host needs an approver; request it with piu or "
                    "POST /v1/access-requests, which can wait for approval",
                    rule=rule.name,
                )
            return self.policy.check(
                rule, reason=request.reason, lifetime_minutes=request.lifetime_minutes
            )
        # Break-glass (SPEC §11): only where the rule allows it; its own cap is the default
        # lifetime and the maximum, whatever the rule's ordinary maximum is.
        if not rule.emergency_allowed:
            raise EmergencyNotAllowed(
                f"rule {rule.name}: break-glass (emergency) access is not allowed",
                rule=rule.name,
            )
        cap = self.policy.emergency_max_lifetime(rule)
        lifetime = cap if request.lifetime_minutes is None else request.lifetime_minutes
        if lifetime > cap:
            raise LifetimeTooLong(
                f"rule {rule.name}: break-glass lifetime {lifetime} min exceeds the maximum "
                f"of {cap} min",
                rule=rule.name,
            )
        return self.policy.check(rule, reason=request.reason, lifetime_minutes=lifetime)

    def roles(self, identity: Identity) -> list[str]:
        return self.policy.roles_for(Subject(identity.username, identity.groups))

    def privileged(self, identity: Identity) -> bool:
        """May read everyone's requests (auditors and admins)."""
        return bool(PRIVILEGED_READ_ROLES & set(self.roles(identity)))

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


def record_denial(
    tx: Transaction, asked: Asked, error: EvenError, *, fingerprint: str, now: datetime
) -> dict[str, Any]:
    """`access.denied` and the DENIED row; returns the record."""
    request = asked.request
    details: dict[str, Any] = {"code": error.code, "mode": request.mode}
    if "rule" in error.extra:
        details["rule"] = str(error.extra["rule"])
    denied = tx.append(
        AuditEvent(type="access.denied", **asked.event_fields(), details=details), now
    )
    stamp = rfc3339(now)
    access_requests.insert(
        tx,
        access_requests.row(
            id=asked.request_id,
            status="DENIED",
            username=asked.identity.username,
            login=asked.login,
            hostname=request.hostname,
            mode=request.mode,
            reason=request.reason,
            rule=details.get("rule"),
            bastion=request.bastion,
            lifetime_minutes=request.lifetime_minutes or 0,
            principals="[]",
            fingerprint=fingerprint,
            status_reason=error.code,
            created=stamp,
            last_modified=stamp,
        ),
    )
    return denied
