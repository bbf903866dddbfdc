"""A progress line on stderr for long `even-audit export` and `verify` runs.

Invariants: it writes only to a terminal (a stream whose `isatty()` is true), so piped or
redirected output and scripts see nothing; it stays silent until `threshold` records have
passed (small logs never show it), redraws at most every `interval` seconds, and clears its
line when done, so the verdict or the shell prompt starts on a clean line. It counts lines
(one record or checkpoint per JSONL line) and bytes; it never reads their content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

THRESHOLD = 100_000
INTERVAL = 0.25
_CLEAR = "\r\x1b[K"


class Progress:
    def __init__(
        self,
        label: str,
        stream: IO[str],
        *,
        total_bytes: int | None = None,
        total_records: int | None = None,
        threshold: int = THRESHOLD,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._label = label
        self._stream = stream
        self._enabled = _is_terminal(stream)
        self._total_bytes = total_bytes
        self._total_records = total_records
        self._threshold = threshold
        self._interval = interval
        self._clock = clock
        self._last = float("-inf")
        self._shown = False
        self.records = 0
        self.bytes = 0

    def advance(self, records: int, size: int) -> None:
        if not self._enabled:
            return
        self.records += records
        self.bytes += size
        if self.records < self._threshold:
            return
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        self._draw()

    def chunk(self, data: bytes) -> None:
        """Count a chunk of JSONL bytes (its newlines are its lines)."""
        if self._enabled:
            self.advance(data.count(b"\n"), len(data))

    def done(self) -> None:
        if self._shown:
            self._stream.write(_CLEAR)
            self._stream.flush()
            self._shown = False

    def _draw(self) -> None:
        share = ""
        if self._total_records:
            share = f" ({min(100, self.records * 100 // self._total_records)}%)"
        elif self._total_bytes:
            share = f" ({min(100, self.bytes * 100 // self._total_bytes)}%)"
        megabytes = self.bytes / 1_000_000
        self._stream.write(
            f"{_CLEAR}{self._label}: {self.records:,} lines, {megabytes:,.1f} MB{share}"
        )
        self._stream.flush()
        self._shown = True


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
