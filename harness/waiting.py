"""Waiting for a condition in tests: poll it until a deadline, never forever."""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_SECONDS = 0.02


def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether `condition()` held within `seconds` (asked once more at the deadline)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_SECONDS)
    return condition()


def wait_for(condition: Callable[[], bool], seconds: float = 30.0, what: str = "") -> None:
    """Return once `condition()` holds; AssertionError naming `what` after `seconds`."""
    if not eventually(condition, seconds):
        raise AssertionError(f"timed out after {seconds} s waiting for {what or 'a condition'}")
