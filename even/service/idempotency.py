"""Idempotency-Key handling shared by both grant modes (SPEC §7).

`claim` takes the key (or replays the first answer) in a transaction of its own before any
work; the answer is stored with `finish` inside the very unit of work that records the grant
or the denial, so a stored answer exists exactly when its outcome does. `release` frees a
key whose request failed without an outcome (nothing was granted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from even.clock import Clock
from even.errors import (
    Denied,
    EvenError,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    LifetimeTooLong,
    LoginNotAllowed,
    NoMatchingRule,
    ReasonRejected,
)
from even.service.admission import BastionNotAllowed
from even.service.models import AccessRequestView
from even.store import idempotency as idempotency_store
from even.store.db import transaction
from even.store.unit_of_work import Transaction


@dataclass(frozen=True)
class IdempotencyKey:
    key: str
    body_sha256: str


class Idempotency:
    def __init__(self, *, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def claim(self, username: str, idem: IdempotencyKey) -> AccessRequestView | None:
        """Take the key, or replay its answer; another body or an unfinished first → error."""
        with transaction(self._engine) as conn:
            now = self._clock.now()
            stored = idempotency_store.find(conn, username, idem.key)
            if stored is not None and now - stored.created < idempotency_store.KEY_LIFETIME:
                if stored.body_sha256 != idem.body_sha256:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used with another request body"
                    )
                if stored.state == "done" and stored.answer is not None:
                    return replay(stored.answer)
                if now - stored.created < idempotency_store.ABANDONED_AFTER:
                    raise IdempotencyInFlight("the first request with this key is in flight")
            idempotency_store.claim(conn, username, idem.key, idem.body_sha256, now)
        return None

    def release(self, username: str, idem: IdempotencyKey) -> None:
        try:
            with transaction(self._engine) as conn:
                idempotency_store.release(conn, username, idem.key)
        except EvenError:
            pass  # the claim expires as abandoned; nothing was granted


def finish(
    tx: Transaction, username: str, idem: IdempotencyKey | None, answer: dict[str, Any]
) -> None:
    """Store the answer in the outcome's own unit of work (no key: nothing to store)."""
    if idem is not None:
        tx.flush()
        idempotency_store.finish(tx.conn, username, idem.key, answer)


def refusal_answer(error: EvenError) -> dict[str, Any]:
    return {
        "error": {
            "type": type(error).__name__,
            "code": error.code,
            "message": error.message,
            "extra": dict(error.extra),
        }
    }


_REPLAYABLE_ERRORS: dict[str, type[EvenError]] = {
    cls.__name__: cls
    for cls in (NoMatchingRule, LoginNotAllowed, BastionNotAllowed, ReasonRejected, LifetimeTooLong)
}


def replay(answer: dict[str, Any]) -> AccessRequestView:
    """The stored answer again: the view, or the stored refusal raised."""
    if "view" in answer:
        return AccessRequestView(**answer["view"])
    error = answer["error"]
    cls = _REPLAYABLE_ERRORS.get(error["type"], Denied)
    replayed = cls(error["message"], **error.get("extra", {}))
    replayed.code = error["code"]
    raise replayed
