"""The hash chain: canonical form, record hashes and sealing (SPEC §8). Pure: no SQL, no clock.

Invariants:
- `hash` = hex SHA-256 of b"even-audit-v1:" + JCS(record without its `hash` member).
- seq starts at 1; `prev_hash` of seq 1 is 64 zeros; each record names its predecessor's hash.
- Values stay in the JCS-safe domain (str, int within ±(2^53-1), bool, null, list, dict with str
  keys): no floats, so orjson with sorted keys gives the same bytes as RFC 8785.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import rfc8785

HASH_PREFIX = b"even-audit-v1:"
GENESIS_HASH = "0" * 64
MAX_SAFE_INT = 2**53 - 1

RECORD_FIELDS = (
    "seq",
    "time",
    "type",
    "username",
    "login",
    "hostname",
    "request_id",
    "reason",
    "details",
    "prev_hash",
)


class ChainError(Exception):
    """Base of audit chain errors."""


class UnsafeValue(ChainError):
    """A value outside the canonical domain (floats, huge ints, non-string keys)."""


def check_domain(value: Any, path: str = "$") -> None:
    """Refuse values whose canonical form could differ between JCS implementations."""
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise UnsafeValue(f"{path}: integer outside ±(2^53-1)")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_domain(item, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnsafeValue(f"{path}: non-string key")
            check_domain(item, f"{path}.{key}")
        return
    raise UnsafeValue(f"{path}: {type(value).__name__} is not allowed in audit records")


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of a value in the audit domain.

    orjson with sorted keys matches JCS for ASCII keys and this domain (tested against the
    `rfc8785` reference); anything with non-ASCII keys goes through the reference, whose key
    order (UTF-16 code units) can differ from orjson's.
    """
    if value is None or type(value) is str:
        # Most members of a record are these: no keys to sort, no domain walk needed.
        return orjson.dumps(value)
    try:
        ascii_keys = _scan(value)
    except _NotPlain:
        # Unusual but possibly fine (a subclass, a tuple, a Mapping) or outside the domain:
        # the slow walk raises UnsafeValue naming the path, or accepts the value.
        check_domain(value)
        ascii_keys = _ascii_keys(value)
    if ascii_keys:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return rfc8785.dumps(value)


def canonical_reference(value: Any) -> bytes:
    """The reference RFC 8785 implementation, for tests and cross-checks."""
    return rfc8785.dumps(value)


class _NotPlain(Exception):
    """`_scan` met something its exact-type fast path does not decide."""


def _scan(value: Any) -> bool:
    """Check the domain and tell whether every key is ASCII, in one walk.

    This is the hot path of export and verification (every record, every value), so it
    compares exact types, checks leaves inline and builds no paths; whatever it cannot decide
    that way raises `_NotPlain` for the slower `check_domain`.
    """
    kind = type(value)
    if kind is dict:
        try:
            ascii_keys = "".join(value).isascii()
        except TypeError:  # a non-string key
            raise _NotPlain from None
        items = value.values()
    elif kind is list:
        ascii_keys = True
        items = value
    else:
        items = (value,)
        ascii_keys = True
    for item in items:
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                continue
            raise _NotPlain
        if kind is dict or kind is list:
            if not _scan(item):
                ascii_keys = False
            continue
        raise _NotPlain
    return ascii_keys


def _ascii_keys(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(k.isascii() and _ascii_keys(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_ascii_keys(v) for v in value)
    return True


def record_hash(record: Mapping[str, Any]) -> str:
    """The record's hash over every member except `hash` itself."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hash_canonical(canonical(body))


def hash_canonical(body: bytes) -> str:
    """The hash of a record whose canonical form without `hash` is `body`."""
    return hashlib.sha256(HASH_PREFIX + body).hexdigest()


@dataclass(frozen=True)
class AuditEvent:
    """What a caller wants recorded; the store adds seq, time and the chain links."""

    type: str
    username: str | None = None
    login: str | None = None
    hostname: str | None = None
    request_id: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def seal(event: AuditEvent, *, seq: int, time: str, prev_hash: str) -> dict[str, Any]:
    """Turn an event into the chained record that follows `prev_hash`."""
    record = _unsealed(event, seq=seq, time=time, prev_hash=prev_hash)
    record["hash"] = record_hash(record)
    return record


def _unsealed(event: AuditEvent, *, seq: int, time: str, prev_hash: str) -> dict[str, Any]:
    """The record's members but `hash`."""
    return {
        "seq": seq,
        "time": time,
        "type": event.type,
        "username": event.username,
        "login": event.login,
        "hostname": event.hostname,
        "request_id": event.request_id,
        "reason": event.reason,
        "details": dict(event.details),
        "prev_hash": prev_hash,
    }


class SealTemplate:
    """An event's canonical form, built ahead, with gaps for what only the appender knows.

    The appender holds the write lock, so everything else is done before: the record's
    canonical bytes around `prev_hash`, `seq` and `time` (JCS is member by member, and the
    members sort in a fixed order: details, hostname, login, prev_hash, reason, request_id,
    seq, time, type, username), and its details as stored. `seal` then only joins bytes and
    hashes; tests check it gives exactly `seal(event, …)`.
    """

    __slots__ = ("_after_prev", "_after_time", "_before_prev", "details_json", "event")

    def __init__(self, event: AuditEvent) -> None:
        def member(name: str, value: Any) -> bytes:
            return b'"' + name.encode() + b'":' + canonical(value)

        details = dict(event.details)  # a copy: the caller's dict may change later
        # What `replace(event, details=details)` makes, without its per-call field walk.
        self.event = AuditEvent(
            event.type,
            event.username,
            event.login,
            event.hostname,
            event.request_id,
            event.reason,
            details,
        )
        self._before_prev = b",".join(
            (
                HASH_PREFIX + b"{" + member("details", details),
                member("hostname", event.hostname),
                member("login", event.login),
                b'"prev_hash":"',
            )
        )
        self._after_prev = (
            b'",' + member("reason", event.reason) + b"," + member("request_id", event.request_id)
        )
        self._after_time = (
            b'",' + member("type", event.type) + b"," + member("username", event.username) + b"}"
        )
        self.details_json = orjson.dumps(details, option=orjson.OPT_SORT_KEYS).decode()

    def seal(self, *, seq: int, time: str, prev_hash: str) -> dict[str, Any]:
        """The record `seal(event, seq=…, time=…, prev_hash=…)` would give, hash included."""
        if type(seq) is not int or not 0 < seq <= MAX_SAFE_INT:
            raise UnsafeValue("seq must be a positive integer within 2^53-1")
        if not (time.isascii() and time.isprintable() and '"' not in time and "\\" not in time):
            raise UnsafeValue("time must be printable ASCII without quotes or backslashes")
        if len(prev_hash) != 64 or not prev_hash.isascii() or not prev_hash.isalnum():
            raise UnsafeValue("prev_hash must be 64 hex digits")
        event = self.event
        body = b"".join(
            (
                self._before_prev,
                prev_hash.encode(),
                self._after_prev,
                b',"seq":%d,"time":"' % seq,
                time.encode(),
                self._after_time,
            )
        )
        record = _unsealed(event, seq=seq, time=time, prev_hash=prev_hash)
        record["hash"] = hashlib.sha256(body).hexdigest()
        return record
