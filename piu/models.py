"""The values piu exchanges with Even (SPEC §7), parsed and checked at the boundary.

Everything Even sends is untrusted input here: names end up in file names and in the ssh
argv, so they are checked against the SPEC's grammars once, in this module (a login starting
with `-` would otherwise become an ssh option). Every parsed value keeps the server's JSON
object as `raw`, which is what `-o json` prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from piu.errors import BadResponse

JSON = dict[str, Any]

NAME_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")  # logins and usernames (SPEC §1)
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")  # SPEC §1, checked for length apart
BASTION_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")  # UUID or ULID, with margin
_CERT_RE = re.compile(r"[a-z0-9@.-]+-cert-v01@openssh\.com [A-Za-z0-9+/]+={0,2}(?: [ -~]*)?")
STATUSES = ("PUSHING", "GRANTED", "DENIED", "FAILED", "EXPIRED", "REVOKED", "PENDING_APPROVAL")


# A numeric last label (decimal or 0x-hex) makes an IP literal in some spelling (SPEC §1).
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")


def is_hostname(value: str) -> bool:
    return (
        len(value) <= 253
        and HOSTNAME_RE.fullmatch(value) is not None
        and _NUMERIC_LABEL_RE.fullmatch(value.rsplit(".", 1)[-1]) is None
    )


@dataclass(frozen=True)
class AccessRequestBody:
    """The body of POST /v1/access-requests; None fields are left out (server defaults)."""

    hostname: str
    reason: str
    public_key: str
    mode: str = "certificate"
    login: str | None = None
    bastion: str | None = None
    lifetime_minutes: int | None = None
    emergency: bool = False

    def to_json(self) -> JSON:
        body: JSON = {
            "hostname": self.hostname,
            "reason": self.reason,
            "mode": self.mode,
            "public_key": self.public_key,
        }
        optional = {
            "login": self.login,
            "bastion": self.bastion,
            "lifetime_minutes": self.lifetime_minutes,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if self.emergency:  # sent only when asked: an older Even refuses unknown fields
            body["emergency"] = True
        return body


@dataclass(frozen=True)
class ApprovalEntry:
    username: str
    time: str | None
    comment: str | None


@dataclass(frozen=True)
class Approval:
    """The `approval` object of a request that needs approvers (SPEC §7)."""

    needed: int
    approvals: tuple[ApprovalEntry, ...]
    approver_groups: tuple[str, ...]
    expires_at: str | None

    @property
    def remaining(self) -> int:
        return max(0, self.needed - len(self.approvals))


@dataclass(frozen=True)
class Grant:
    """The 201 answer to POST /v1/access-requests."""

    id: str
    status: str
    username: str
    login: str
    hostname: str
    mode: str
    certificate: str | None
    serial: int | None
    valid_before: str | None
    bastion: str | None
    bastion_certificate: str | None
    bastion_serial: int | None
    receipt: JSON | None
    raw: JSON = field(repr=False)
    approval: Approval | None = None
    emergency: bool = False
    status_reason: str | None = None


@dataclass(frozen=True)
class AccessRequest:
    """One item of GET /v1/access-requests (also the answer to a revoke)."""

    id: str
    status: str
    username: str | None
    login: str | None
    hostname: str | None
    mode: str | None
    reason: str | None
    serial: int | None
    valid_before: str | None
    created: str | None
    raw: JSON = field(repr=False)
    approval: Approval | None = None


@dataclass(frozen=True)
class Page:
    items: tuple[AccessRequest, ...]
    next: int | None
    raw: JSON = field(repr=False)


@dataclass(frozen=True)
class Allowance:
    """One policy rule the caller may use, from GET /v1/whoami."""

    rule: str
    hosts: tuple[str, ...]
    logins: tuple[str, ...]
    modes: tuple[str, ...]
    max_lifetime_minutes: int | None
    bastion: str | None


@dataclass(frozen=True)
class Identity:
    username: str
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    issuer: str | None
    allowed: tuple[Allowance, ...]
    raw: JSON = field(repr=False)


class _Fields:
    """Typed access to one JSON object; any mismatch is a BadResponse naming the field."""

    def __init__(self, raw: object, what: str) -> None:
        if not isinstance(raw, dict):
            raise BadResponse(f"Even's {what} is not a JSON object")
        self.raw: JSON = raw
        self.what = what

    def bad(self, key: str, expected: str) -> BadResponse:
        return BadResponse(f"Even's {self.what} has an invalid {key!r} (expected {expected})")

    def opt_string(self, key: str, pattern: re.Pattern[str] | None = None) -> str | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or (pattern and not pattern.fullmatch(value)):
            raise self.bad(key, "a string" if pattern is None else f"to match {pattern.pattern}")
        return value

    def string(self, key: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.opt_string(key, pattern)
        if value is None:
            raise self.bad(key, "a string")
        return value

    def opt_int(self, key: str) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.bad(key, "an integer")
        return value

    def opt_obj(self, key: str) -> JSON | None:
        value = self.raw.get(key)
        if value is not None and not isinstance(value, dict):
            raise self.bad(key, "an object")
        return value

    def flag(self, key: str) -> bool:
        value = self.raw.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.bad(key, "true or false")
        return bool(value)

    def strs(self, key: str) -> tuple[str, ...]:
        value = self.raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.bad(key, "a list of strings")
        return tuple(value)


def parse_grant(raw: object) -> Grant:
    f = _Fields(raw, "access grant")
    hostname = f.string("hostname")
    if not is_hostname(hostname):
        raise f.bad("hostname", "a host name")
    return Grant(
        id=f.string("id", REQUEST_ID_RE),
        status=f.string("status"),
        username=f.string("username", NAME_RE),
        login=f.string("login", NAME_RE),
        hostname=hostname,
        mode=f.string("mode"),
        certificate=_certificate(f, "certificate"),
        serial=f.opt_int("serial"),
        valid_before=f.opt_string("valid_before"),
        bastion=f.opt_string("bastion", BASTION_RE),
        bastion_certificate=_certificate(f, "bastion_certificate"),
        bastion_serial=f.opt_int("bastion_serial"),
        receipt=f.opt_obj("receipt"),
        raw=f.raw,
        approval=parse_approval(f.opt_obj("approval")),
        emergency=f.flag("emergency"),
        status_reason=f.opt_string("status_reason"),
    )


def parse_approval(raw: JSON | None) -> Approval | None:
    if raw is None:
        return None
    f = _Fields(raw, "approval")
    needed = f.opt_int("needed")
    if needed is None or needed < 0:
        raise f.bad("needed", "a count")
    entries = f.raw.get("approvals") or []
    if not isinstance(entries, list):
        raise f.bad("approvals", "a list")
    return Approval(
        needed=needed,
        approvals=tuple(_parse_entry(e) for e in entries),
        approver_groups=f.strs("approver_groups"),
        expires_at=f.opt_string("expires_at"),
    )


def _parse_entry(raw: object) -> ApprovalEntry:
    f = _Fields(raw, "approval entry")
    return ApprovalEntry(
        username=f.string("username"), time=f.opt_string("time"), comment=f.opt_string("comment")
    )


def _certificate(f: _Fields, key: str) -> str | None:
    value = f.opt_string(key)
    if value is not None and not _CERT_RE.fullmatch(value.strip()):
        raise f.bad(key, "one OpenSSH certificate line")
    return None if value is None else value.strip()


def parse_access_request(raw: object) -> AccessRequest:
    # Listed items are only displayed (escaped), so they are typed but not pattern-checked.
    f = _Fields(raw, "access request")
    return AccessRequest(
        id=f.string("id"),
        status=f.string("status"),
        username=f.opt_string("username"),
        login=f.opt_string("login"),
        hostname=f.opt_string("hostname"),
        mode=f.opt_string("mode"),
        reason=f.opt_string("reason"),
        serial=f.opt_int("serial"),
        valid_before=f.opt_string("valid_before"),
        created=f.opt_string("created"),
        raw=f.raw,
        approval=parse_approval(f.opt_obj("approval")),
    )


def parse_page(raw: object) -> Page:
    f = _Fields(raw, "list")
    items = f.raw.get("items")
    if not isinstance(items, list):
        raise f.bad("items", "a list")
    return Page(tuple(parse_access_request(i) for i in items), f.opt_int("next"), f.raw)


def parse_identity(raw: object) -> Identity:
    f = _Fields(raw, "whoami answer")
    allowed = f.raw.get("allowed") or []
    if not isinstance(allowed, list):
        raise f.bad("allowed", "a list")
    return Identity(
        username=f.string("username"),
        groups=f.strs("groups"),
        roles=f.strs("roles"),
        issuer=f.opt_string("issuer"),
        allowed=tuple(_parse_allowance(a) for a in allowed),
        raw=f.raw,
    )


def _parse_allowance(raw: object) -> Allowance:
    f = _Fields(raw, "allowed rule")
    return Allowance(
        rule=f.string("rule"),
        hosts=f.strs("hosts"),
        logins=f.strs("logins"),
        modes=f.strs("modes"),
        max_lifetime_minutes=f.opt_int("max_lifetime_minutes"),
        bastion=f.opt_string("bastion"),
    )
