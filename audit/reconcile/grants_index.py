"""The grants of an export, indexed the way sshd names a login (built in one pass).

Fed the export's bytes chunk by chunk, alongside the verifier (audit.verify), so the file is
read once; the index is used only if that same pass finds the export VALID. Only
`access.granted` and `access.revoked` records are parsed (a substring test skips the rest).

What each grant may be seen as in an sshd log (SPEC §8 record details):
- certificate mode: the certificate with `details.key_id` and `details.serial`, on
  `hostname` as `login`; through a bastion also the bastion certificate, `key_id + ":bastion"`
  with `details.bastion_serial`, on the bastion as the requester's own `username`;
- push mode: each key of `details.fingerprints`, on each host of `details.hosts` (the
  bastion, if any, as `username`; the target as `login`).
Its window is [`details.valid_after`, `details.valid_before`), cut short by the first
`access.revoked` of the same `request_id`. Times are kept as epoch seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

_MARKERS = (b"access.granted", b"access.revoked")


@dataclass(slots=True, eq=False)
class Grant:
    seq: int
    request_id: str | None
    username: str | None
    login: str | None
    hostname: str | None
    mode: str
    valid_after: float
    valid_before: float
    window_text: tuple[str, str]  # valid_after and valid_before as the record wrote them
    key_id: str | None = None
    serial: int | None = None
    fingerprint: str | None = None
    ca_fingerprint: str | None = None
    revoked_at: float | None = None
    revoked_text: str | None = None
    used: bool = False


@dataclass(frozen=True, slots=True)
class Sighting:
    """One way a grant can appear in a log: on `host`, as `login`."""

    grant: Grant
    host: str | None
    login: str | None


@dataclass
class GrantsIndex:
    by_certificate: dict[tuple[str, int], Sighting] = field(default_factory=dict)
    by_fingerprint: dict[str, list[Sighting]] = field(default_factory=dict)
    by_request: dict[str, list[Grant]] = field(default_factory=dict)
    ca_fingerprints: set[str] = field(default_factory=set)
    grants: list[Grant] = field(default_factory=list)
    _strings: dict[str, str] = field(default_factory=dict, repr=False)

    def add_record(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        if kind == "access.granted":
            self._add_grant(record)
        elif kind == "access.revoked":
            self._add_revocation(record)

    def _add_grant(self, record: dict[str, Any]) -> None:
        details = record.get("details")
        if not isinstance(details, dict):
            return
        after_text = details.get("valid_after") or record.get("time")
        before_text = details.get("valid_before")
        after, before = _epoch(after_text), _epoch(before_text)
        if after is None or before is None:
            return  # a grant without a window explains nothing
        mode = "push" if details.get("mode") == "push" else "certificate"
        grant = Grant(
            seq=_int(record.get("seq")) or 0,
            request_id=_str(record.get("request_id")),
            username=self._shared(record.get("username")),
            login=self._shared(record.get("login")),
            hostname=self._shared(record.get("hostname")),
            mode=mode,
            valid_after=after,
            valid_before=before,
            window_text=(str(after_text), str(before_text)),  # kept as written, for the report
            key_id=_str(details.get("key_id")),
            serial=_int(details.get("serial")),
            fingerprint=_str(details.get("fingerprint")),
            ca_fingerprint=self._shared(details.get("ca_fingerprint")),
        )
        self.grants.append(grant)
        if grant.request_id is not None:
            self.by_request.setdefault(grant.request_id, []).append(grant)
        if grant.ca_fingerprint is not None:
            self.ca_fingerprints.add(grant.ca_fingerprint)
        bastion = _str(details.get("bastion"))
        if mode == "push":
            self._add_push(grant, details, bastion)
            return
        if grant.key_id is not None and grant.serial is not None:
            self.by_certificate[(grant.key_id, grant.serial)] = Sighting(
                grant, grant.hostname, grant.login
            )
        bastion_serial = _int(details.get("bastion_serial"))
        if grant.key_id is not None and bastion_serial is not None and bastion is not None:
            self.by_certificate[(grant.key_id + ":bastion", bastion_serial)] = Sighting(
                grant, bastion, grant.username
            )

    def _add_push(self, grant: Grant, details: dict[str, Any], bastion: str | None) -> None:
        fingerprints = details.get("fingerprints")
        keys = (
            [f for f in fingerprints if isinstance(f, str)]
            if isinstance(fingerprints, list)
            else []
        )
        if not keys and grant.fingerprint is not None:
            keys = [grant.fingerprint]
        hosts = details.get("hosts")
        names = [h for h in hosts if isinstance(h, str)] if isinstance(hosts, list) else []
        if not names and grant.hostname is not None:
            names = [grant.hostname]
        sightings = [
            Sighting(grant, host, grant.username if host == bastion else grant.login)
            for host in names
        ]
        for key in keys:
            self.by_fingerprint.setdefault(key, []).extend(sightings)

    def _add_revocation(self, record: dict[str, Any]) -> None:
        request_id = _str(record.get("request_id"))
        when = _epoch(record.get("time"))
        if request_id is None or when is None:
            return
        for grant in self.by_request.get(request_id, ()):
            if grant.revoked_at is None or when < grant.revoked_at:
                grant.revoked_at = when
                grant.revoked_text = str(record.get("time"))

    def _shared(self, value: object) -> str | None:
        # Users, logins, hosts and CAs repeat across grants: one string each, not one per
        # grant (the index is the only thing this command holds in memory).
        if not isinstance(value, str):
            return None
        return self._strings.setdefault(value, value)

    def unused(self) -> Iterator[Grant]:
        return (grant for grant in self.grants if not grant.used)


class IndexBuilder:
    """Feeds the records of an export's byte chunks into a GrantsIndex."""

    def __init__(self) -> None:
        self.index = GrantsIndex()
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        lines = chunk.split(b"\n")
        lines[0] = self._pending + lines[0]
        self._pending = lines.pop()
        self._lines(lines)

    def finish(self) -> GrantsIndex:
        if self._pending:
            self._lines([self._pending])
            self._pending = b""
        return self.index

    def _lines(self, lines: list[bytes]) -> None:
        granted, revoked = _MARKERS
        add = self.index.add_record
        for line in lines:
            if granted in line or revoked in line:
                try:
                    item = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # the verifier reports it; this index is then discarded
                if isinstance(item, dict):
                    add(item)


def _epoch(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if type(value) is int else None
