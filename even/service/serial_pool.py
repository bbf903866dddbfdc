"""Serials this process reserved ahead of need, each with the CA that was active then.

The grant hot path signs certificates before it queues for the audit writer lock, so that two
workers sharing one database spend the lock on the records alone. It needs a serial for that,
which only the database may assign (SPEC §4): the pool holds blocks reserved through the
group-commit writer (even.store.serials), added only once their transaction has committed.
Inside the grant's transaction the CA that signed is compared with the CA active then; if a
rotation came in between, the pre-signed certificate is dropped and the grant signs again
under the lock, so no certificate is issued by a CA that was no longer active at its commit.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

from sqlalchemy.engine import Connection

from even.ca import UserCA
from even.store.serials import reserve_serials
from even.store.writer import GroupCommitWriter

BLOCK = 512
LOW_WATER = 128
log = logging.getLogger("even.service.serial_pool")


class SerialPool:
    def __init__(
        self,
        writer: GroupCommitWriter,
        signing_ca: Callable[[Connection], UserCA],
        *,
        block: int = BLOCK,
        low_water: int = LOW_WATER,
    ) -> None:
        self._writer = writer
        self._signing_ca = signing_ca
        self._block = block
        self._low_water = low_water
        self._entries: collections.deque[tuple[int, UserCA]] = collections.deque()
        self._refilling = False
        self._lock = threading.Lock()

    def take(self, count: int) -> list[tuple[int, UserCA]] | None:
        """`count` reserved serials signed by one CA, or None (the caller draws under the lock)."""
        with self._lock:
            taken = None
            if len(self._entries) >= count:
                taken = [self._entries.popleft() for _ in range(count)]
                if len({id(ca) for _, ca in taken}) != 1:
                    taken = None  # a block boundary across a CA change: not worth mending
            refill = len(self._entries) < self._low_water and not self._refilling
            if refill:
                self._refilling = True
        if refill:
            # Outside the lock: a future already done runs `_refilled` (which takes the lock)
            # right here, in this thread.
            self._writer.submit(self._reserve).add_done_callback(self._refilled)
        return taken

    def _reserve(self, conn: Connection) -> tuple[list[int], UserCA]:
        return reserve_serials(conn, self._block), self._signing_ca(conn)

    def _refilled(self, future: Future[tuple[list[int], UserCA]]) -> None:
        # Called once the reserving transaction committed (or failed: then nothing is added).
        with self._lock:
            self._refilling = False
            if future.exception() is not None:
                log.warning("could not reserve serials: %s", future.exception())
                return
            serials, ca = future.result()
            self._entries.extend((serial, ca) for serial in serials)
