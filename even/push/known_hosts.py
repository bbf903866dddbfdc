"""`push.known_hosts`: the host keys Even pins, in OpenSSH known_hosts format (SPEC §5).

Keyed by the exact name Even uses: a bastion's address host (`[host]:port` when the port is
not 22, as OpenSSH writes it) and a target's hostname. Pinning is exact on purpose:
- wildcard and negated patterns (`*`, `?`, `!`) pin nothing: they are skipped, so a broad
  entry can never vouch for a host it was not written for;
- hashed names (`|1|salt|hash`, `ssh-keygen -H`) match by HMAC-SHA1 like OpenSSH's;
- `@cert-authority` lines are skipped (Even does not accept host certificates) and a key
  under `@revoked` is never pinned, whatever other line lists it;
- a malformed line makes the whole file unusable (`KnownHostsError`): a typo must not
  silently unpin a host, so every push fails with the line number instead.
Parsing is pure; `KnownHostsFile` re-reads the file when it changes, so adding a host does
not need a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

_MARKERS = frozenset({"@cert-authority", "@revoked"})
_PATTERN_CHARS = frozenset("*?!")


class KnownHostsError(ValueError):
    """The file cannot be used as it is; the message names the line."""


@dataclass(frozen=True)
class HostKey:
    key_type: str
    blob: bytes


@dataclass(frozen=True)
class _Entry:
    names: frozenset[str]
    hashed: tuple[tuple[bytes, bytes], ...]  # (salt, digest) pairs
    key: HostKey

    def matches(self, name: str) -> bool:
        if name in self.names:
            return True
        return any(
            hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
            for salt, digest in self.hashed
        )


@dataclass(frozen=True)
class KnownHosts:
    entries: tuple[_Entry, ...] = ()
    revoked: frozenset[bytes] = frozenset()

    def keys_for(self, name: str) -> list[HostKey]:
        """The keys pinned for exactly `name` (see `lookup_name`), revoked ones left out."""
        name = name.lower()
        found: list[HostKey] = []
        for entry in self.entries:
            pinned = entry.matches(name) and entry.key.blob not in self.revoked
            if pinned and entry.key not in found:
                found.append(entry.key)
        return found


def lookup_name(host: str, port: int) -> str:
    """The known_hosts name of `host` on `port`, as OpenSSH writes it."""
    return host if port == 22 else f"[{host}]:{port}"


def parse_known_hosts(text: str) -> KnownHosts:
    entries: list[_Entry] = []
    revoked: set[bytes] = set()
    # Split on \n only: str.splitlines would also split on U+2028 and friends.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if marker is not None and marker not in _MARKERS:
            raise KnownHostsError(f"line {number}: unknown marker {marker[:20]!r}")
        if len(fields) < 3:
            raise KnownHostsError(f"line {number}: expected 'NAMES TYPE BASE64'")
        key = _host_key(number, fields[1], fields[2])
        if marker == "@revoked":
            revoked.add(key.blob)
            continue
        if marker == "@cert-authority":
            continue
        names, hashed = _names(number, fields[0])
        if names or hashed:
            entries.append(_Entry(frozenset(names), tuple(hashed), key))
    return KnownHosts(tuple(entries), frozenset(revoked))


def _names(number: int, field_text: str) -> tuple[set[str], list[tuple[bytes, bytes]]]:
    names: set[str] = set()
    hashed: list[tuple[bytes, bytes]] = []
    for name in field_text.split(","):
        if name.startswith("|1|"):
            parts = name.split("|")
            try:
                if len(parts) != 4:
                    raise ValueError
                salt = base64.b64decode(parts[2], validate=True)
                digest = base64.b64decode(parts[3], validate=True)
            except (ValueError, binascii.Error) as exc:
                raise KnownHostsError(f"line {number}: malformed hashed name") from exc
            hashed.append((salt, digest))
        elif name and not (_PATTERN_CHARS & set(name)):
            names.add(name.lower())  # OpenSSH compares host names case-insensitively
    return names, hashed


def _host_key(number: int, key_type: str, data: str) -> HostKey:
    try:
        blob = base64.b64decode(data, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise KnownHostsError(f"line {number}: the key is not valid base64") from exc
    length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if length < 1 or blob[4 : 4 + length] != key_type.encode("ascii", "replace"):
        raise KnownHostsError(f"line {number}: the key does not match its type {key_type[:40]!r}")
    return HostKey(key_type, blob)


@dataclass
class KnownHostsFile:
    """The pinned keys of `path`, re-read when the file changes (thread-safe)."""

    path: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stamp: tuple[int, int, int] | None = field(default=None, repr=False)
    _parsed: KnownHosts = field(default_factory=KnownHosts, repr=False)

    def current(self) -> KnownHosts:
        """The file's pins; an absent file pins nothing (every host is then refused)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return KnownHosts()
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                text = self.path.read_text(encoding="utf-8", errors="replace")
                self._parsed = parse_known_hosts(text)  # raises: keep nothing half-read
                self._stamp = stamp
            return self._parsed
