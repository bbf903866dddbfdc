"""Group commit: one writer thread runs many callers' work in one transaction, one fsync.

With `synchronous=FULL` (SQLite) or `synchronous_commit=on` (PostgreSQL) every commit waits
for the disk, and the audit chain allows one writer at a time, so committing grants one by
one caps throughput at the disk's flush rate. Here callers hand their work to the writer
thread and block; it takes everything queued (up to a batch), runs the pieces in one
transaction, commits once, and only then wakes each caller with its own result; if a piece
fails, the batch rolls back and every piece reruns in its own transaction, so a failure only
ever reaches its own caller. Every answer still leaves after its own records are committed; if the
commit fails, every caller in the batch gets StoreUnavailable and nothing of theirs exists.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine

from even.errors import EvenError, StoreUnavailable
from even.store.db import is_store_unavailable, transaction

T = TypeVar("T")
MAX_BATCH = 128
log = logging.getLogger("even.store.writer")

_Item = tuple[Callable[[Connection], Any], "Future[Any]"]
BATCH_STATE = "even.batch_state"


class _PieceFailed(Exception):
    """One piece of a batch raised: roll the batch back and run the pieces one by one."""


@dataclass
class BatchState:
    """What the pieces of one transaction may share: facts this transaction established.

    Lives only inside one transaction attempt (set at BEGIN, dropped at its end), so a
    rolled-back attempt can never leak a head that was not committed.
    """

    last_record: dict[str, Any] | None = None
    memo: dict[str, Any] = field(default_factory=dict)


def batch_state(conn: Connection) -> BatchState | None:
    state = conn.info.get(BATCH_STATE)
    return state if isinstance(state, BatchState) else None


class GroupCommitWriter:
    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        self.items = 0

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work(conn)` in the next group transaction; return once that has committed."""
        return self.submit(work).result()

    def submit(self, work: Callable[[Connection], T]) -> Future[T]:
        """Queue `work`; the future completes after its transaction committed (or failed).

        An event loop can await it (`asyncio.wrap_future`) without tying up a thread.
        """
        self._ensure_thread()
        future: Future[T] = Future()
        self._queue.put((work, future))
        return future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="even-group-commit", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        """All pieces in one transaction; if any piece fails, each reruns on its own."""
        try:
            results = self._run_together(batch)
        except _PieceFailed:
            for item in batch:
                self._run_alone(item)
            return
        except EvenError as exc:
            self._fail(batch, exc)
            return
        except Exception:
            log.exception("group commit failed")
            self._fail(batch, StoreUnavailable("the audit store could not commit"))
            return
        self.batches += 1
        self.items += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)

    def _run_together(self, batch: list[_Item]) -> list[Any]:
        # No savepoint per piece (two more statements each, on the serial path): failures
        # are rare, and the whole batch rolls back before anything is answered.
        with transaction(self._engine) as conn:
            conn.info[BATCH_STATE] = BatchState()
            try:
                results = []
                for work, _ in batch:
                    try:
                        results.append(work(conn))
                    except BaseException as exc:
                        raise _PieceFailed from exc
                return results
            finally:
                conn.info.pop(BATCH_STATE, None)

    def _run_alone(self, item: _Item) -> None:
        work, future = item
        try:
            with transaction(self._engine) as conn:
                conn.info[BATCH_STATE] = BatchState()
                try:
                    result = work(conn)
                finally:
                    conn.info.pop(BATCH_STATE, None)
        except BaseException as exc:
            # A timeout or conflict inside the piece is a 503, never a 500.
            failure: BaseException = exc
            if is_store_unavailable(exc):
                failure = StoreUnavailable("the audit store is unavailable")
            future.set_exception(failure)
        else:
            self.batches += 1
            self.items += 1
            future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Item], error: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)
