"""Certificate grants as data: what to sign, and which records and rows a grant writes.

No I/O and no locks: built before the writer lock so that under it a grant only needs its
place in the log. `sign` makes the certificates for given serials; `grant_records` turns a
signature into the `access.granted` event (canonicalised ahead as a SealTemplate), the
access_requests row (but for its timestamps) and the rows of serials reserved ahead.
`requested_event` is the `access.requested` record every request starts with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from audit.chain import AuditEvent, SealTemplate
from even.ca import CertificateRequest, UserCA
from even.clock import rfc3339
from even.names import bastion_principal, host_principal
from even.policy import Grant, Rule
from even.service.admission import Asked
from even.sshkeys import ParsedPublicKey
from even.store import access_requests

CLOCK_SKEW = timedelta(seconds=60)
BASTION_FORCE_COMMAND = "/usr/sbin/nologin"


@dataclass(frozen=True, slots=True)
class Signed:
    """A grant's certificates, signed with `ca_fingerprint` and the serials they carry."""

    serial: int
    certificate: str
    bastion_serial: int | None
    bastion_certificate: str | None
    ca_fingerprint: str
    valid_after: datetime
    valid_before: datetime
    principals: list[str]
    valid_after_text: str
    valid_before_text: str


@dataclass(frozen=True, slots=True)
class GrantRecords:
    """Everything a grant writes that does not depend on its place in the log."""

    signed: Signed
    granted: SealTemplate  # `access.granted`, canonicalised ahead
    row: dict[str, Any]  # the access_requests row but for `created`/`last_modified`
    serial_rows: list[dict[str, Any]]  # for serials reserved ahead (drawn ones have theirs)


def requested_event(asked: Asked, fingerprint: str) -> SealTemplate:
    """`access.requested`, canonicalised here so that under the lock it only needs its place."""
    request = asked.request
    details: dict[str, Any] = {
        "mode": request.mode,
        "fingerprint": fingerprint,
        "lifetime_minutes": request.lifetime_minutes,
        "bastion": request.bastion,
        "dev_issuer": asked.identity.dev_issuer,
    }
    if request.emergency:
        details["emergency"] = True
    return SealTemplate(
        AuditEvent(type="access.requested", **asked.event_fields(), details=details)
    )


def grant_extra(asked: Asked) -> dict[str, Any] | None:
    """Details a direct grant adds to `access.granted`: `emergency` for break-glass."""
    return {"emergency": True} if asked.request.emergency else None


def principals(rule: Rule, login: str, hostname: str) -> list[str]:
    return [login] if rule.principals == "login" else [host_principal(login, hostname)]


def critical_options(rule: Rule) -> list[tuple[str, str]]:
    if rule.source_addresses:
        return [("source-address", ",".join(rule.source_addresses))]
    return []


def sign(
    ca: UserCA,
    serials: list[int],
    asked: Asked,
    public_key: ParsedPublicKey,
    grant: Grant,
    now: datetime,
) -> Signed:
    """The grant's certificate (and the bastion's, with the second serial)."""
    rule = grant.rule
    username = asked.identity.username
    valid_after = now - CLOCK_SKEW
    valid_before = now + timedelta(minutes=grant.lifetime_minutes)
    names = principals(rule, asked.login, asked.request.hostname)
    certificate = ca.sign(
        CertificateRequest(
            public_key=public_key,
            serial=serials[0],
            key_id=f"even:{asked.request_id}:{username}",
            principals=names,
            valid_after=valid_after,
            valid_before=valid_before,
            extensions=rule.extensions,
            critical_options=critical_options(rule),
        )
    )
    bastion_serial = bastion_certificate = None
    if rule.bastion is not None:
        bastion_serial = serials[1]
        bastion_certificate = ca.sign(
            CertificateRequest(
                public_key=public_key,
                serial=bastion_serial,
                key_id=f"even:{asked.request_id}:{username}:bastion",
                # One hop only: the bastion's `odd principals` opens <target>:22 for it.
                principals=[bastion_principal(username, rule.bastion, asked.request.hostname)],
                valid_after=valid_after,
                valid_before=valid_before,
                extensions=["permit-port-forwarding"],
                critical_options=[
                    ("force-command", BASTION_FORCE_COMMAND),
                    *critical_options(rule),
                ],
            )
        )
    return Signed(
        serial=serials[0],
        certificate=certificate,
        bastion_serial=bastion_serial,
        bastion_certificate=bastion_certificate,
        ca_fingerprint=ca.active.fingerprint,
        valid_after=valid_after,
        valid_before=valid_before,
        principals=names,
        valid_after_text=rfc3339(valid_after),
        valid_before_text=rfc3339(valid_before),
    )


def grant_records(
    signed: Signed,
    asked: Asked,
    public_key: ParsedPublicKey,
    grant: Grant,
    extra: dict[str, Any] | None = None,
) -> GrantRecords:
    """`extra`: details only some grants carry (`emergency`, `approvers`)."""
    rule = grant.rule
    request = asked.request
    key_id = f"even:{asked.request_id}:{asked.identity.username}"
    details: dict[str, Any] = {
        "serial": signed.serial,
        "key_id": key_id,
        "fingerprint": public_key.fingerprint,
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
    if asked.identity.dev_issuer:
        details["dev_issuer"] = True
    if extra:
        details.update(extra)
    row = access_requests.row(
        id=asked.request_id,
        status="GRANTED",
        username=asked.identity.username,
        login=asked.login,
        hostname=request.hostname,
        mode=request.mode,
        reason=request.reason,
        rule=rule.name,
        bastion=rule.bastion,
        lifetime_minutes=grant.lifetime_minutes,
        fingerprint=public_key.fingerprint,
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
            "request_id": asked.request_id,
            "purpose": purpose,
            "valid_before": signed.valid_before_text,
            "ca_fingerprint": signed.ca_fingerprint,
        }
        for serial, purpose in serials
    ]
    return GrantRecords(
        signed=signed,
        granted=SealTemplate(
            AuditEvent(type="access.granted", **asked.event_fields(), details=details)
        ),
        row=row,
        serial_rows=serial_rows,
    )
