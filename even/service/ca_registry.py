"""Which user-CA key signs and which keys hosts must trust (SPEC §6).

States live in the database so every replica agrees: exactly one `active` key signs; `next`
keys are published before they sign (hosts sync them first); `retired` keys stay published
until the last certificate they signed has expired. Private keys stay in their files.
The first start seeds the table from `ca.keys` in the config (first key active).
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from audit.chain import AuditEvent
from even.ca import CAKey, UserCA, generate_ca_key_bytes, load_ca_key
from even.clock import Clock, rfc3339
from even.config import Settings
from even.errors import ConfigError, InvalidRequest
from even.sshkeys import ParsedPublicKey
from even.store import ca_keys
from even.store.db import read_only, transaction
from even.store.unit_of_work import append_record


class CaRegistry:
    def __init__(self, *, settings: Settings, engine: Engine, clock: Clock) -> None:
        self._settings = settings
        self._engine = engine
        self._clock = clock
        self._files: dict[str, CAKey] = {}
        self._lock = threading.Lock()
        self._snapshot: tuple[tuple[str, str], ...] = ()
        self._ca: UserCA | None = None
        # The configured keys, loaded at start: a missing or broken key fails `serve` early.
        self._configured = [load_ca_key(settings.path(name)) for name in settings.ca.keys]
        if not self._configured:
            raise ConfigError("ca.keys lists no key")

    # -- reading --------------------------------------------------------------------------

    def is_configured_ca_key(self, public_key: ParsedPublicKey) -> bool:
        """A cheap early check; signing re-checks against every key in the database."""
        return any(key.blob == public_key.blob for key in self._configured)

    @property
    def configured_active(self) -> CAKey:
        return self._configured[0]

    def signing_ca(self, conn: Connection) -> UserCA:
        """The CA as the database says now (inside the caller's transaction)."""
        states = ca_keys.all_keys(conn)
        if not states:
            self._seed(conn)
            states = ca_keys.all_keys(conn)
        return self._ca_for(states)

    def published_lines(self) -> str:
        now = rfc3339(self._clock.now())
        with read_only(self._engine) as conn:
            states = ca_keys.all_keys(conn)
        if not states:
            return "".join(f"{key.public_line}\n" for key in self._configured[:1])
        lines = [
            s.public_line
            for s in states
            if s.state in ("next", "active")
            or (s.state == "retired" and (s.last_valid_before or "") > now)
        ]
        return "".join(f"{line}\n" for line in lines)

    def _ca_for(self, states: list[ca_keys.CaKeyState]) -> UserCA:
        snapshot = tuple((s.fingerprint, s.state) for s in states)
        with self._lock:
            if self._ca is None or snapshot != self._snapshot:
                active = [s for s in states if s.state == "active"]
                if len(active) != 1:
                    raise ConfigError(f"{len(active)} active CA keys in the database; need one")
                others = [s for s in states if s.state != "active"]
                self._ca = UserCA([self._load(active[0]), *(self._load(s) for s in others)])
                self._snapshot = snapshot
            return self._ca

    def _load(self, state: ca_keys.CaKeyState) -> CAKey:
        if state.fingerprint not in self._files:
            key = load_ca_key(self._settings.path(state.key_file))
            if key.fingerprint != state.fingerprint:
                raise ConfigError(f"{state.key_file} no longer holds CA key {state.fingerprint}")
            self._files[state.fingerprint] = key
        return self._files[state.fingerprint]

    def ensure_seeded(self) -> None:
        with transaction(self._engine) as conn:
            if not ca_keys.all_keys(conn):
                self._seed(conn)

    def _seed(self, conn: Connection) -> None:
        now = rfc3339(self._clock.now())
        for index, (name, key) in enumerate(
            zip(self._settings.ca.keys, self._configured, strict=True)
        ):
            ca_keys.insert(
                conn,
                ca_keys.CaKeyState(
                    fingerprint=key.fingerprint,
                    public_line=key.public_line,
                    key_file=name,
                    state="active" if index == 0 else "next",
                    created=now,
                    activated=now if index == 0 else None,
                    retired=None,
                    last_valid_before=None,
                ),
            )

    # -- changes (operator CLI) -----------------------------------------------------------

    def rotate(self, *, actor: str) -> ca_keys.CaKeyState:
        """Add a `next` key (published, not signing) in a new 0600 file beside the config."""
        now = self._clock.now()
        name = f"user_ca_{now.strftime('%Y%m%dT%H%M%SZ')}"
        path = self._settings.path(name)
        _write_new_key(path)
        key = load_ca_key(path)
        state = ca_keys.CaKeyState(
            fingerprint=key.fingerprint,
            public_line=key.public_line,
            key_file=name,
            state="next",
            created=rfc3339(now),
            activated=None,
            retired=None,
            last_valid_before=None,
        )
        with transaction(self._engine) as conn:
            if not ca_keys.all_keys(conn):
                self._seed(conn)
            ca_keys.insert(conn, state)
            self._audit(conn, now, actor, "added", key.fingerprint)
        return state

    def activate(self, fingerprint: str | None, *, actor: str) -> ca_keys.CaKeyState:
        """Promote a `next` key; the old active key retires (published until its certs end)."""
        now = self._clock.now()
        with transaction(self._engine) as conn:
            if not ca_keys.all_keys(conn):
                self._seed(conn)
            states = ca_keys.all_keys(conn)
            candidates = [
                s
                for s in states
                if s.state == "next" and (fingerprint is None or s.fingerprint == fingerprint)
            ]
            if len(candidates) != 1:
                raise InvalidRequest("name exactly one `next` key to activate (see `even ca list`)")
            chosen = candidates[0]
            for old in (s for s in states if s.state == "active"):
                until = ca_keys.last_valid_before(conn, old.fingerprint) or rfc3339(now)
                ca_keys.set_state(
                    conn, old.fingerprint, "retired", retired=rfc3339(now), last_valid_before=until
                )
                self._audit(conn, now, actor, "retired", old.fingerprint)
            ca_keys.set_state(conn, chosen.fingerprint, "active", activated=rfc3339(now))
            self._audit(conn, now, actor, "activated", chosen.fingerprint)
            return chosen

    def list_keys(self) -> list[ca_keys.CaKeyState]:
        with read_only(self._engine) as conn:
            return ca_keys.all_keys(conn)

    @staticmethod
    def _audit(conn: Connection, now: datetime, actor: str, action: str, fingerprint: str) -> None:
        event = AuditEvent(
            type="ca.rotated",
            username=actor,
            details={"action": action, "fingerprint": fingerprint},
        )
        append_record(conn, event, now)


def _write_new_key(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(generate_ca_key_bytes())
