"""Injected time: logic asks a Clock, so tests move time instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock tests set and advance by hand."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with `Z`, seconds precision (SPEC §1).

    `isoformat` (less CPU than `strftime`, several times per grant) with its `+00:00` as `Z`;
    years before 1000 go through `strftime` as before (the C library does not pad them)."""
    utc = moment.astimezone(UTC)
    if utc.year < 1000:
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return utc.isoformat(timespec="seconds")[:-6] + "Z"
