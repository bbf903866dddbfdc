"""The public-key registry for push mode and classic grants (`GET/PUT /v1/users/me/keys`).

Invariants:
- Every key is parsed strictly (`even.sshkeys.parse_public_key`: one key, no options, no
  certificate, accepted types only) and stored re-encoded as `TYPE BASE64`; the client's
  comment and spelling are never stored or pushed.
- PUT replaces the whole set in one transaction with its `keys.updated` record (fingerprints
  added and removed), so the registry and the audit log never disagree.
- At most MAX_KEYS per user: every key becomes one line per host on each push.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from audit.chain import AuditEvent
from even.clock import Clock, rfc3339
from even.errors import InvalidRequest
from even.identity import Identity
from even.sshkeys import ParsedPublicKey, parse_public_key
from even.store.db import read_only, transaction
from even.store.tables import UserKeyRow
from even.store.unit_of_work import append_record

MAX_KEYS = 8
_keys = UserKeyRow.__table__  # type: ignore[attr-defined]


class UserKeyService:
    def __init__(self, *, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def keys_for(self, username: str) -> list[ParsedPublicKey]:
        """The user's registered keys, oldest first (re-parsed: stored text is checked too)."""
        with read_only(self._engine) as conn:
            rows = conn.execute(
                select(_keys.c.public_key)
                .where(_keys.c.username == username)
                .order_by(_keys.c.created, _keys.c.fingerprint)
            ).all()
        return [parse_public_key(row.public_key) for row in rows]

    def list_keys(self, identity: Identity) -> list[str]:
        return [key.openssh for key in self.keys_for(identity.username)]

    def replace(self, identity: Identity, lines: list[str]) -> list[str]:
        """Make `lines` the user's keys; returns them as stored."""
        if len(lines) > MAX_KEYS:
            raise InvalidRequest(f"keys: at most {MAX_KEYS} keys")
        parsed: dict[str, ParsedPublicKey] = {}
        for index, line in enumerate(lines):
            try:
                key = parse_public_key(line)
            except InvalidRequest as exc:
                raise InvalidRequest(f"keys[{index}]: {exc.message}") from exc
            parsed.setdefault(key.fingerprint, key)  # the same key twice is one key
        with transaction(self._engine) as conn:
            now = self._clock.now()
            before: dict[str, str] = {
                row.fingerprint: row.created
                for row in conn.execute(
                    select(_keys.c.fingerprint, _keys.c.created).where(
                        _keys.c.username == identity.username
                    )
                )
            }
            conn.execute(delete(_keys).where(_keys.c.username == identity.username))
            for fingerprint, key in parsed.items():
                conn.execute(
                    _keys.insert().values(
                        username=identity.username,
                        fingerprint=fingerprint,
                        public_key=key.openssh,
                        # A key kept keeps its age: pushes list keys oldest first.
                        created=before.get(fingerprint, rfc3339(now)),
                    )
                )
            details: dict[str, Any] = {
                "fingerprints": list(parsed),
                "added": sorted(set(parsed) - set(before)),
                "removed": sorted(set(before) - set(parsed)),
                "count": len(parsed),
            }
            if identity.dev_issuer:
                details["dev_issuer"] = True
            append_record(
                conn,
                AuditEvent(type="keys.updated", username=identity.username, details=details),
                now,
            )
        return [key.openssh for key in parsed.values()]
