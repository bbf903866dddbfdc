"""The published KRL (SPEC §6), kept in memory and brought up to date incrementally.

`GET /v1/krl` is unauthenticated and hosts poll it, so a call must not cost work in proportion
to every grant ever revoked. The publisher holds the built KRL and the serials in it; a call
reads one counter (`krl_state.changes`; at most once per `FRESH_SECONDS`, so most calls need
no query at all) and checks the earliest expiry it holds against the clock. Only when either
moved does it read the revocations numbered after the ones it holds (an indexed range), drop
the serials that aged out, and re-encode the KRL blocks that changed (`even.krl.encode_block`).
A host that already has the current ETag gets its 304 from the cached document, with nothing
built.

Invariants (checked against a full scan by tests):
- The KRL holds exactly the serials of REVOKED requests whose `valid_before` + 10 min is still
  ahead, grouped by the CA key that signed them (keys still in `ca_keys`), with the bytes
  `build_krl` gives for them.
- generation = the latest of: any revocation time, any `valid_before` + 10 min already passed;
  so it only grows, changes exactly when the contents do, and every replica computes the same.
- Every revoke bumps the counter and stamps its request with the new value
  (`revocation_seq`) in its own transaction; the counter row's lock orders them, so once the
  counter reads N every revocation numbered up to N is committed. Reading the counter first
  and then the revocations in (held, N] therefore never misses one. Times are RFC 3339 strings
  in UTC with `Z`, which sort as they compare.
"""

from __future__ import annotations

import hashlib
import heapq
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from even.clock import Clock, rfc3339
from even.krl import BLOCK_SERIALS, EncodedBlock, ca_key_blob, encode_block, krl_from_blocks
from even.store import ca_keys
from even.store.db import read_only
from even.store.tables import AccessRequestRow, CertificateSerialRow, KrlStateRow

KRL_GRACE = timedelta(minutes=10)
# How long a counter read vouches for the cached KRL: another replica's revocation reaches
# this one's KRL within this (this process's own at once, see `invalidate`).
FRESH_SECONDS = 1.0
_requests = AccessRequestRow.__table__  # type: ignore[attr-defined]
_krl_state = KrlStateRow.__table__  # type: ignore[attr-defined]
_serials = CertificateSerialRow.__table__  # type: ignore[attr-defined]
_REVOKED = _requests.c.status == "REVOKED"
_JOIN = _serials.join(_requests, _requests.c.id == _serials.c.request_id)
_CHANGES = select(_krl_state.c.changes).where(_krl_state.c.id == 1)


def record_revocation(conn: Connection) -> int:
    """Bump the revocation counter and return its new value, the revocation's number: call it
    in the transaction that records the revocation, and store the number with it."""
    number = conn.execute(
        update(_krl_state)
        .where(_krl_state.c.id == 1)
        .values(changes=_krl_state.c.changes + 1)
        .returning(_krl_state.c.changes)
    ).scalar_one_or_none()
    if number is None:  # the migration makes the row; a schema made otherwise may lack it
        conn.execute(insert(_krl_state).values(id=1, changes=1))
        return 1
    return int(number)


@dataclass(frozen=True)
class Krl:
    body: bytes
    etag: str
    generation: int
    serials: int


@dataclass
class _State:
    """What the published KRL was built from."""

    changes: int = 0  # every revocation numbered up to this is held
    newest_revocation: str = ""  # newest revoked_at of a request with serials (generation)
    last_aged_out: str = ""  # newest valid_before already past its grace
    live: dict[tuple[str, int], str] = field(default_factory=dict)  # (ca, serial) → valid_before
    expiry: list[tuple[str, str, int]] = field(default_factory=list)  # heap of (vb, ca, serial)
    # The held serials by CA fingerprint and block, each block's encoding, and the blocks whose
    # encoding is out of date: a rebuild re-encodes only those.
    blocks: dict[str, dict[int, set[int]]] = field(default_factory=dict)
    encoded: dict[tuple[str, int], EncodedBlock] = field(default_factory=dict)
    dirty: set[tuple[str, int]] = field(default_factory=set)
    document: Krl | None = None


def _stamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class KrlPublisher:
    def __init__(self, *, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._lock = threading.Lock()
        self._state: _State | None = None
        # (monotonic time of the counter read, earliest valid_before held, the document):
        # replaced whole, so the event loop can read it without the lock.
        self._fresh: tuple[float, str | None, Krl] | None = None
        self.builds = 0  # how many times the bytes were built (tests, benchmarks)

    def fresh(self) -> Krl | None:
        """The document if the counter was read within FRESH_SECONDS and nothing it holds has
        aged out since; else None (call `current`). Pure CPU, no I/O: the event loop may call
        it, so a host with the current ETag gets its 304 without a thread or a query."""
        fresh = self._fresh
        if fresh is None or time.monotonic() - fresh[0] > FRESH_SECONDS:
            return None
        _, next_expiry, document = fresh
        if next_expiry is not None and next_expiry <= rfc3339(self._clock.now() - KRL_GRACE):
            return None
        return document

    def invalidate(self) -> None:
        """This process recorded a revocation: the next call reads the counter."""
        self._fresh = None

    def current(self) -> Krl:
        """The KRL as of now; built only if something changed since the last call."""
        cut = rfc3339(self._clock.now() - KRL_GRACE)  # valid_before <= cut: aged out
        with self._lock:
            state = self._state
            checked_at = time.monotonic()
            with read_only(self._engine) as conn:
                # First: every revocation numbered up to it is committed and will be read.
                changes = conn.execute(_CHANGES).scalar()
                if state is None or changes is None:
                    state = self._load(conn, cut)  # (no counter row: never, after migrations)
                elif changes != state.changes:
                    self._add_revocations(conn, state, int(changes), cut)
                elif not (state.expiry and state.expiry[0][0] <= cut):
                    assert state.document is not None
                    self._remember(checked_at, state, state.document)
                    return state.document  # nothing changed: nothing to build
                state.changes = int(changes or 0)
                lines = {k.fingerprint: k.public_line for k in ca_keys.all_keys(conn)}
            self._age_out(state, cut)
            state.document = self._build(state, lines)
            self._state = state
            self._remember(checked_at, state, state.document)
            return state.document

    def _remember(self, checked_at: float, state: _State, document: Krl) -> None:
        self._fresh = (checked_at, state.expiry[0][0] if state.expiry else None, document)

    # -- reading ---------------------------------------------------------------------------

    def _load(self, conn: Connection, cut: str) -> _State:
        """The first call: the revoked serials still live, and the two times the generation
        needs; the expired rest is never read row by row."""
        state = _State()
        newest = conn.execute(
            select(func.max(_requests.c.revoked_at)).select_from(_JOIN).where(_REVOKED)
        ).scalar()
        aged = conn.execute(
            select(func.max(_serials.c.valid_before))
            .select_from(_JOIN)
            .where(and_(_REVOKED, _serials.c.valid_before <= cut))
        ).scalar()
        state.newest_revocation, state.last_aged_out = str(newest or ""), str(aged or "")
        rows = conn.execute(
            select(_serials.c.serial, _serials.c.ca_fingerprint, _serials.c.valid_before)
            .select_from(_JOIN)
            .where(and_(_REVOKED, _serials.c.valid_before > cut))
        ).all()
        for serial, fingerprint, valid_before in rows:
            self._hold(state, fingerprint, int(serial), str(valid_before))
        return state

    def _add_revocations(self, conn: Connection, state: _State, changes: int, cut: str) -> None:
        """The serials of the revocations numbered (state.changes, changes]."""
        # By number alone, so the planner walks that index (the status index would match every
        # revoked request ever); only a revoke numbers a request, the status is checked below.
        rows = conn.execute(
            select(
                _requests.c.status,
                _requests.c.revoked_at,
                _serials.c.serial,
                _serials.c.ca_fingerprint,
                _serials.c.valid_before,
            )
            .select_from(_JOIN)
            .where(
                and_(
                    _requests.c.revocation_seq > state.changes,
                    _requests.c.revocation_seq <= changes,
                )
            )
        ).all()
        for status, revoked_at, serial, fingerprint, valid_before in rows:
            if status != "REVOKED":
                continue
            state.newest_revocation = max(state.newest_revocation, str(revoked_at))
            if str(valid_before) > cut:
                self._hold(state, fingerprint, int(serial), str(valid_before))
            else:  # revoked after it had already aged out: only the generation notices
                state.last_aged_out = max(state.last_aged_out, str(valid_before))

    # -- the held set ----------------------------------------------------------------------

    @staticmethod
    def _hold(state: _State, fingerprint: str | None, serial: int, valid_before: str) -> None:
        key = (fingerprint or "", serial)
        if key not in state.live:
            state.live[key] = valid_before
            heapq.heappush(state.expiry, (valid_before, key[0], serial))
            block = serial // BLOCK_SERIALS
            state.blocks.setdefault(key[0], {}).setdefault(block, set()).add(serial)
            state.dirty.add((key[0], block))

    @staticmethod
    def _age_out(state: _State, cut: str) -> None:
        while state.expiry and state.expiry[0][0] <= cut:
            valid_before, fingerprint, serial = heapq.heappop(state.expiry)
            state.live.pop((fingerprint, serial), None)
            state.last_aged_out = max(state.last_aged_out, valid_before)
            block = serial // BLOCK_SERIALS
            state.blocks[fingerprint][block].discard(serial)
            state.dirty.add((fingerprint, block))

    def _build(self, state: _State, lines: dict[str, str]) -> Krl:
        for fingerprint, block in state.dirty:
            serials = state.blocks[fingerprint][block]
            if serials:
                state.encoded[fingerprint, block] = encode_block(sorted(serials))
            else:
                del state.blocks[fingerprint][block]
                state.encoded.pop((fingerprint, block), None)
        state.dirty.clear()
        sections = []
        serial_count = 0
        for fingerprint, blocks in state.blocks.items():
            line = lines.get(fingerprint)
            if line is None or not blocks:
                continue  # a key no longer in ca_keys: its certificates are not listed
            sections.append(
                (ca_key_blob(line), [state.encoded[fingerprint, b] for b in sorted(blocks)])
            )
            serial_count += sum(len(serials) for serials in blocks.values())
        times = [_stamp(state.newest_revocation)] if state.newest_revocation else []
        if state.last_aged_out:
            times.append(_stamp(state.last_aged_out) + KRL_GRACE)
        change = max(times, default=datetime.fromtimestamp(0, UTC))
        generation = int(change.timestamp())
        body = krl_from_blocks(sections, generation=generation, generated_at=change, comment="even")
        self.builds += 1
        return Krl(
            body=body,
            etag='"' + hashlib.sha256(body).hexdigest() + '"',
            generation=generation,
            serials=serial_count,
        )
