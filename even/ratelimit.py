"""Token-bucket rate limits (SPEC §7): per username after the token verified, per client IP
for failed authentication. Pure logic with an injected clock; state is per process (each
replica limits on its own, which bounds the total at replicas × rate).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

from even.clock import Clock

MAX_TRACKED_KEYS = 100_000  # bounded memory under a flood of distinct IPs or names


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate` tokens per second up to `burst`; `hit` takes one, or says how long to wait."""

    def __init__(self, *, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int:
        """Seconds until `key` may proceed again (0 = now), without taking a token."""
        with self._lock:
            bucket = self._refill(key)
            return 0 if bucket.tokens >= 1 else self._wait(bucket)

    def hit(self, key: str) -> int:
        """Take a token for `key`: 0 if allowed, else the whole seconds to wait."""
        if self._rate <= 0:
            return 0
        with self._lock:
            bucket = self._refill(key)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0
            return self._wait(bucket)

    def _wait(self, bucket: _Bucket) -> int:
        return max(1, math.ceil((1 - bucket.tokens) / self._rate)) if self._rate > 0 else 1

    def _refill(self, key: str) -> _Bucket:
        now = self._clock.now().timestamp()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=self._burst, updated=now)
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_TRACKED_KEYS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.updated = now
        return bucket
