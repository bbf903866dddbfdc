"""Console sign-ins and sessions over the store (even/store/console_sessions.py).

Invariants:
- The cookie carries a random session id (256 bits); the database holds its SHA-256 only.
- A session ends at the access token's `exp` (capped by `session_max_hours`) or at sign-out,
  whichever comes first; an expired row is never honoured, whether or not it was purged.
- A sign-in's state is bound to the browser that started it (a second random cookie whose
  hash is stored with the state), is single-use, and lives `LOGIN_MINUTES`.
- Each session has its own CSRF token (random, stored with it), compared in constant time.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from even.clock import Clock
from even.identity import Identity
from even.store import console_sessions as store
from even.store.db import read_only, transaction

LOGIN_MINUTES = 10


def secret_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ConsoleSession:
    identity: Identity
    csrf_token: str
    expires: str

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and secrets.compare_digest(
            presented.encode("utf-8", "surrogatepass"), self.csrf_token.encode("ascii")
        )


class SessionStore:
    def __init__(self, *, engine: Engine, clock: Clock, max_hours: int) -> None:
        self._engine = engine
        self._clock = clock
        self._max = timedelta(hours=max_hours)

    def begin_login(self, state: str, nonce: str, code_verifier: str) -> str:
        """Record a pending sign-in; returns the browser secret for the sign-in cookie."""
        browser = secrets.token_urlsafe(32)
        now = self._clock.now()
        pending = store.PendingLogin(
            browser_sha256=secret_hash(browser),
            nonce=nonce,
            code_verifier=code_verifier,
            expires=_time(now + timedelta(minutes=LOGIN_MINUTES)),
        )
        with transaction(self._engine) as conn:
            store.purge_expired(conn, _time(now))
            store.add_login(conn, secret_hash(state), pending, _time(now))
        return browser

    def finish_login(self, state: str, browser: str | None) -> store.PendingLogin | None:
        """The pending sign-in for `state` if this browser started it; used up either way."""
        with transaction(self._engine) as conn:
            pending = store.take_login(conn, secret_hash(state), _time(self._clock.now()))
        if pending is None or browser is None:
            return None
        if not secrets.compare_digest(pending.browser_sha256, secret_hash(browser)):
            return None
        return pending

    def create(self, identity: Identity, token_expires: float) -> str:
        """A new session for `identity` until the token's exp; returns the cookie's id."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock.now()
        ends = min(datetime.fromtimestamp(token_expires, UTC), now + self._max)
        row = store.StoredSession(
            username=identity.username,
            groups=identity.groups,
            issuer=identity.issuer,
            subject=identity.subject,
            csrf_token=secrets.token_urlsafe(32),
            expires=_time(ends),
        )
        with transaction(self._engine) as conn:
            store.add_session(conn, secret_hash(session_id), row, _time(now))
        return session_id

    def lookup(self, session_id: str) -> ConsoleSession | None:
        if not 20 <= len(session_id) <= 100:
            return None
        with read_only(self._engine) as conn:
            row = store.find_session(conn, secret_hash(session_id), _time(self._clock.now()))
        if row is None:
            return None
        identity = Identity(
            username=row.username, groups=row.groups, issuer=row.issuer, subject=row.subject
        )
        return ConsoleSession(identity=identity, csrf_token=row.csrf_token, expires=row.expires)

    def end(self, session_id: str) -> None:
        with transaction(self._engine) as conn:
            store.delete_session(conn, secret_hash(session_id))
