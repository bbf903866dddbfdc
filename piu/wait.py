"""Waiting for approvers: the line that says who must approve, polling with backoff, a spinner.

A request that needs approval is answered `202 PENDING_APPROVAL`. piu then polls
`GET /v1/access-requests/{id}` (1 s, doubling to at most 10 s; the delays are injectable) until
the request leaves that state, and hands a `GRANTED` answer back to `piu.access.complete`, so
what follows is exactly a direct grant. Invariants:
- Nothing is written for a request that is not granted; the outcome of a wait is either a
  granted answer or a PiuError saying what happened (denied 4, expired 5, cancelled 1).
- Ctrl-C never cancels: the request stays pending and piu says how to pick it up (`piu wait`).
- The spinner draws only on a terminal's stderr; piped output gets the one line and no
  escape codes. A few transport failures in a row are waited out, not fatal: a wait can be
  long, and one network blip should not throw it away.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from piu.errors import Denied, RequestFailed, StillPending, Unavailable
from piu.render import escape

if TYPE_CHECKING:
    from piu.client import EvenClient
    from piu.models import Grant

PENDING = "PENDING_APPROVAL"
FIRST_DELAY, MAX_DELAY = 1.0, 10.0
TICK = 0.25  # seconds between spinner frames
FRAMES = "|/-\\"
MAX_TRANSPORT_FAILURES = 5
EXPIRY_GRACE = 60.0  # seconds past expires_at before piu stops waiting on its own


def backoff(first: float = FIRST_DELAY, maximum: float = MAX_DELAY) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(maximum, delay * 2)


def expires_epoch(grant: Grant) -> float | None:
    if grant.approval is None or not grant.approval.expires_at:
        return None
    try:
        return (
            datetime.strptime(grant.approval.expires_at, "%Y-%m-%dT%H:%M:%SZ")
            .replace(tzinfo=UTC)
            .timestamp()
        )
    except ValueError:
        return None


def pending_line(grant: Grant, *, waiting: bool) -> str:
    """`waiting for 1 approval from sre-leads, expires 14:32 UTC; Ctrl-C leaves it pending:
    piu wait ID` (or, when not waiting, where it stands and how to wait later)."""
    approval = grant.approval
    remaining = approval.remaining if approval else 1
    noun = "approval" if remaining == 1 else "approvals"
    groups = ", ".join(escape(g) for g in approval.approver_groups) if approval else ""
    text = f"{remaining} {noun} from {groups or 'an approver'}"
    when = expires_epoch(grant)
    if when is not None:
        text += ", expires " + datetime.fromtimestamp(when, UTC).strftime("%H:%M UTC")
    rid = escape(grant.id)
    if waiting:
        return f"waiting for {text}; Ctrl-C leaves it pending: piu wait {rid}"
    return f"request {rid} is waiting for {text}; to wait for it: piu wait {rid}"


@dataclass
class Spinner:
    """One self-rewriting line on a terminal's stderr; does nothing when not enabled."""

    write: Callable[[str], None]
    enabled: bool
    _frames: Iterator[str] = field(default_factory=lambda: itertools.cycle(FRAMES))
    _shown: bool = False

    def draw(self, text: str) -> None:
        if self.enabled:
            self.write(f"\r\x1b[2K{next(self._frames)} {text}")
            self._shown = True

    def clear(self) -> None:
        if self.enabled and self._shown:
            self.write("\r\x1b[2K")
            self._shown = False


@dataclass
class Waiter:
    client: EvenClient
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    spinner: Spinner
    delays: Iterator[float]

    def until_decided(self, grant: Grant) -> Grant:
        """Poll until the request is no longer pending; its answer then (any status)."""
        failures = 0
        current = grant
        for delay in self.delays:
            self._pause(delay, current)
            try:
                current = self.client.get_access_request(grant.id)
            except Unavailable:
                failures += 1
                if failures >= MAX_TRANSPORT_FAILURES:
                    raise
                continue
            failures = 0
            if current.status != PENDING:
                return current
            deadline = expires_epoch(current)
            if deadline is not None and self.clock() > deadline + EXPIRY_GRACE:
                return current  # Even has not marked it yet; its window is over all the same
        raise AssertionError("backoff never ends")  # pragma: no cover

    def _pause(self, delay: float, grant: Grant) -> None:
        if not self.spinner.enabled:
            self.sleep(delay)
            return
        waited = 0.0
        text = _spinner_text(grant)
        while waited < delay:
            self.spinner.draw(text)
            step = min(TICK, delay - waited)
            self.sleep(step)
            waited += step


def _spinner_text(grant: Grant) -> str:
    approval = grant.approval
    if approval is None:
        return f"waiting for approval of {escape(grant.id)}"
    got = len(approval.approvals)
    return f"waiting for approval of {escape(grant.id)} ({got}/{approval.needed})"


def conclude(grant: Grant) -> Grant:
    """A decided request's answer if it was granted; otherwise the error saying what happened."""
    rid = escape(grant.id)
    why = f": {escape(grant.status_reason)}" if grant.status_reason else ""
    if grant.status == "GRANTED":
        return grant
    if grant.status == "DENIED":
        raise Denied(f"request {rid} was denied{why}", hint="ask an approver why, or ask again")
    if grant.status in {"EXPIRED", PENDING}:
        raise StillPending(
            f"request {rid} expired before enough approvers answered{why}",
            hint="ask again, and ask an approver (`piu approvals` shows them what waits)",
        )
    if grant.status == "CANCELLED":
        raise RequestFailed(f"request {rid} was cancelled{why}", hint="ask again if still needed")
    raise RequestFailed(f"request {rid} ended as {escape(grant.status)}{why}")
