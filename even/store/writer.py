"""Group commit: one writer thread runs many callers' work in one transaction, one fsync.

With `synchronous=FULL` (SQLite) or `synchronous_commit=on` (PostgreSQL) every commit waits
for the disk, and the audit chain allows one writer at a time, so committing grants one by
one caps throughput at the disk's flush rate. Here callers hand their work to the writer
thread and block; once it holds the write lock it takes everything queued (up to a batch),
runs the pieces in one transaction, commits once, and only then wakes each caller with its
own result; if a piece fails, the batch rolls back and every piece reruns in its own
transaction, so a failure only ever reaches its own caller. Every answer still leaves after
its own records are committed; if the commit fails, every caller in the batch gets
StoreUnavailable and nothing of theirs exists.

Each piece runs against the transaction's unit of work (even.store.unit_of_work): the
pieces of one batch chain their audit records on each other and defer their plain INSERTs to
one executemany per statement just before the commit; the outbox rows of each record are
among them (the engine's record hook), so they commit in the batch of their record. Use cases
hand the writer a `Unit` (`commit`/`commit_async`) and never see the batch; `run` takes raw
connection work (serial reservations, tests).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine

from even.errors import EvenError, StoreUnavailable
from even.store.db import is_store_unavailable, transaction
from even.store.unit_of_work import TRANSACTION, Transaction, Unit

T = TypeVar("T")
MAX_BATCH = 128
log = logging.getLogger("even.store.writer")


@dataclass(frozen=True)
class _LoopWaiter:
    """A caller awaiting on an event loop: answered from that loop's own thread."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_Waiter = Future[Any] | _LoopWaiter
_Item = tuple[Callable[[Connection], Any], _Waiter]


class _PieceFailed(Exception):
    """One piece of a batch raised: roll the batch back and run the pieces one by one."""


def insert_row(conn: Connection, statement: Any, row: dict[str, Any]) -> None:
    """INSERT `row` now, or at the end of the group transaction if `conn` runs one."""
    tx = conn.info.get(TRANSACTION)
    if isinstance(tx, Transaction):
        tx.insert(statement, row)
    else:
        conn.execute(statement, row)


def _apply(unit: Unit[T], conn: Connection) -> T:
    tx: Transaction = conn.info[TRANSACTION]
    return unit.apply(tx)


class GroupCommitWriter:
    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        self.items = 0

    def commit(self, unit: Unit[T]) -> T:
        """Apply `unit` in the next group transaction; return once that has committed."""
        return self.submit(partial(_apply, unit)).result()

    async def commit_async(self, unit: Unit[T]) -> T:
        """`commit` for a coroutine (see `run_async`)."""
        return await self.run_async(partial(_apply, unit))

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work(conn)` in the next group transaction; return once that has committed."""
        return self.submit(work).result()

    def submit(self, work: Callable[[Connection], T]) -> Future[T]:
        """Queue `work`; the future completes after its transaction committed (or failed)."""
        self._ensure_thread()
        future: Future[T] = Future()
        self._queue.put((work, future))
        return future

    async def run_async(self, work: Callable[[Connection], T]) -> T:
        """`run` for a coroutine: awaits without tying up a thread.

        The answers of one batch reach each event loop in one wake-up (one call_soon_threadsafe),
        not one per caller: each wake-up releases the GIL, and winning it back from a busy
        event loop thread costs the writer up to a switch interval every time.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ensure_thread()
        self._queue.put((work, _LoopWaiter(loop, future)))
        return await future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _ensure_thread(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
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
            self._take_queued(batch)
            # _run_together takes more once it holds the write lock: what arrives while this
            # process waits for the lock joins this commit instead of waiting once more.
            self._commit(batch)

    def _take_queued(self, batch: list[_Item]) -> None:
        """Add what is queued now to `batch`, up to a batch; a stop request stays queued."""
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._queue.put(None)  # stop after this batch
                return
            batch.append(item)

    def _commit(self, batch: list[_Item]) -> None:
        """All pieces in one transaction; if any piece fails, each reruns on its own."""
        outcomes = _Outcomes()
        try:
            results = self._run_together(batch)
        except _PieceFailed:
            for item in batch:
                self._run_alone(item, outcomes)
        except EvenError as exc:
            self._fail(batch, exc, outcomes)
        except BaseException:  # nothing may end this thread with callers still waiting
            log.exception("group commit failed")
            self._fail(batch, StoreUnavailable("the audit store could not commit"), outcomes)
        else:
            self.batches += 1
            self.items += len(batch)
            for (_, waiter), result in zip(batch, results, strict=True):
                outcomes.add(waiter, result, None)
        outcomes.deliver()

    def _run_together(self, batch: list[_Item]) -> list[Any]:
        # No savepoint per piece (two more statements each, on the serial path): failures
        # are rare, and the whole batch rolls back before anything is answered.
        # `batch` grows in place: the caller answers everyone in it, however this ends.
        locked = False
        try:
            with transaction(self._engine) as conn:
                locked = True
                self._take_queued(batch)
                tx = conn.info[TRANSACTION] = Transaction(conn, defer=True)
                try:
                    results = []
                    for work, _ in batch:
                        try:
                            results.append(work(conn))
                        except BaseException as exc:
                            raise _PieceFailed from exc
                    try:
                        tx.flush()
                    except Exception as exc:
                        if is_store_unavailable(exc):  # the store, not a row: all get a 503
                            raise StoreUnavailable("the audit store is unavailable") from exc
                        raise _PieceFailed from exc  # whose row failed is unknown: each alone
                    return results
                finally:
                    conn.info.pop(TRANSACTION, None)
        except EvenError:
            if not locked:
                # No lock (busy or down store): what queued meanwhile would wait as long for
                # the same answer, so it gets it now, not one timeout after another.
                self._take_queued(batch)
            raise

    def _run_alone(self, item: _Item, outcomes: _Outcomes) -> None:
        work, waiter = item
        try:
            with transaction(self._engine) as conn:
                tx = conn.info[TRANSACTION] = Transaction(conn, defer=True)
                try:
                    result = work(conn)
                    tx.flush()
                finally:
                    conn.info.pop(TRANSACTION, None)
        except BaseException as exc:
            # A timeout or conflict inside the piece is a 503, never a 500.
            failure: BaseException = exc
            if is_store_unavailable(exc):
                failure = StoreUnavailable("the audit store is unavailable")
            outcomes.add(waiter, None, failure)
        else:
            self.batches += 1
            self.items += 1
            outcomes.add(waiter, result, None)

    @staticmethod
    def _fail(batch: list[_Item], error: BaseException, outcomes: _Outcomes) -> None:
        for _, waiter in batch:
            outcomes.add(waiter, None, error)


class _Outcomes:
    """A batch's answers, handed out once the batch is over: thread futures at once, loop
    futures in one call per loop."""

    def __init__(self) -> None:
        self._by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        ] = {}

    def add(self, waiter: _Waiter, result: Any, error: BaseException | None) -> None:
        if isinstance(waiter, _LoopWaiter):
            self._by_loop.setdefault(waiter.loop, []).append((waiter.future, result, error))
        elif not waiter.done():
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(result)

    def deliver(self) -> None:
        for loop, answers in self._by_loop.items():
            try:
                loop.call_soon_threadsafe(_answer, answers)
            except RuntimeError:  # that loop has closed: nobody is waiting any more
                log.warning("%d answers for a closed event loop dropped", len(answers))


def _answer(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in answers:
        if future.done():  # the caller gave up (cancelled); its work has committed regardless
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
