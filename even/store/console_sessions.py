"""Tables and queries for the web console's sign-ins and sessions (SPEC §13).

Invariants:
- Only hashes of the secrets are stored: a session's id and a sign-in's state are random
  strings handed to the browser, and the rows are keyed by their SHA-256, so a copy of the
  database cannot be replayed as a cookie.
- A session row is valid until `expires` (the access token's `exp`, or sooner); sign-out
  deletes it. A pending sign-in row lives a few minutes and is deleted when it is used, so a
  state can be redeemed once.
- Times are RFC 3339 UTC strings, as elsewhere in the store; comparisons are on those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel


class ConsoleSessionRow(SQLModel, table=True):
    __tablename__ = "console_sessions"

    id_sha256: str = Field(primary_key=True, max_length=64)
    username: str = Field(max_length=64)
    groups: str = "[]"  # JSON array, as the token said at sign-in
    issuer: str
    subject: str
    csrf_token: str = Field(max_length=64)
    created: str
    expires: str = Field(index=True)


class ConsoleLoginRow(SQLModel, table=True):
    __tablename__ = "console_logins"

    state_sha256: str = Field(primary_key=True, max_length=64)
    browser_sha256: str = Field(max_length=64)  # the sign-in cookie it must come back with
    nonce: str = Field(max_length=128)
    code_verifier: str = Field(max_length=128)
    created: str
    expires: str = Field(index=True)


_sessions = ConsoleSessionRow.__table__  # type: ignore[attr-defined]
_logins = ConsoleLoginRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StoredSession:
    username: str
    groups: tuple[str, ...]
    issuer: str
    subject: str
    csrf_token: str
    expires: str


@dataclass(frozen=True)
class PendingLogin:
    browser_sha256: str
    nonce: str
    code_verifier: str
    expires: str


def add_session(conn: Connection, id_sha256: str, session: StoredSession, now: str) -> None:
    conn.execute(
        _sessions.insert().values(
            id_sha256=id_sha256,
            username=session.username,
            groups=json.dumps(list(session.groups)),
            issuer=session.issuer,
            subject=session.subject,
            csrf_token=session.csrf_token,
            created=now,
            expires=session.expires,
        )
    )


def find_session(conn: Connection, id_sha256: str, now: str) -> StoredSession | None:
    row = conn.execute(
        select(_sessions).where(_sessions.c.id_sha256 == id_sha256, _sessions.c.expires > now)
    ).first()
    if row is None:
        return None
    return StoredSession(
        username=row.username,
        groups=tuple(json.loads(row.groups)),
        issuer=row.issuer,
        subject=row.subject,
        csrf_token=row.csrf_token,
        expires=row.expires,
    )


def delete_session(conn: Connection, id_sha256: str) -> None:
    conn.execute(delete(_sessions).where(_sessions.c.id_sha256 == id_sha256))


def add_login(conn: Connection, state_sha256: str, login: PendingLogin, now: str) -> None:
    conn.execute(
        _logins.insert().values(
            state_sha256=state_sha256,
            browser_sha256=login.browser_sha256,
            nonce=login.nonce,
            code_verifier=login.code_verifier,
            created=now,
            expires=login.expires,
        )
    )


def take_login(conn: Connection, state_sha256: str, now: str) -> PendingLogin | None:
    """The pending sign-in for this state, deleted in the same transaction (use once)."""
    row = conn.execute(select(_logins).where(_logins.c.state_sha256 == state_sha256)).first()
    if row is None:
        return None
    conn.execute(delete(_logins).where(_logins.c.state_sha256 == state_sha256))
    if row.expires <= now:
        return None
    return PendingLogin(
        browser_sha256=row.browser_sha256,
        nonce=row.nonce,
        code_verifier=row.code_verifier,
        expires=row.expires,
    )


def purge_expired(conn: Connection, now: str) -> None:
    conn.execute(delete(_sessions).where(_sessions.c.expires <= now))
    conn.execute(delete(_logins).where(_logins.c.expires <= now))
