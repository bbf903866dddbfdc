"""Engines and the one-transaction-per-use-case helpers, for SQLite and PostgreSQL.

Invariants:
- Every write goes through `transaction()`, and writes are totally ordered across all
  processes and replicas that share the database, so "read the audit head, append after it"
  can never interleave. Threads of one process first queue on an in-process lock; then
  SQLite takes its file lock with `BEGIN IMMEDIATE`, and on PostgreSQL the first statement
  of every write transaction is `pg_advisory_xact_lock(WRITER_LOCK_KEY)`
  (READ COMMITTED, so the statements after it see everything committed before the lock was
  granted). The audit table's `UNIQUE(seq)` and its link trigger (`prev_hash` must be record
  `seq - 1`'s hash) are the tripwire should anything ever write around this.
- Fail closed: a storage failure anywhere in a transaction, the commit included, leaves as
  `StoreUnavailable` (503 + Retry-After). Use cases return a credential only after the `with`
  block has exited, i.e. after the commit returned.
- Recovery without restarting: pooled connections are pinged on checkout and a lost connection
  invalidates the pool, so the first request after the database is back gets a fresh one.
  Connect, lock and statement waits are bounded, so a down or locked database answers 503
  quickly instead of hanging the worker threads.
- Durability: SQLite WAL with `synchronous=FULL`; PostgreSQL `synchronous_commit=on` set on
  every connection (an operator's cluster default of `off` must not silently apply to us).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from even.errors import StoreUnavailable

log = logging.getLogger("even.store")

SQLITE_BUSY_TIMEOUT_MS = 5000
READ_ONLY_OPTION = "even_read_only"

# One cluster-wide writer order (any constant unique to Even's database; "Even" in ASCII).
WRITER_LOCK_KEY = 0x4576656E
# Seconds libpq waits for a TCP connection: a dead host must not hold a request long.
PG_CONNECT_TIMEOUT_S = 3
# Waiting for the writer lock (or a row/table lock) longer than this → 503, client retries.
PG_LOCK_TIMEOUT_MS = 5_000
# No single statement of ours should take this long; exports read in small batches.
PG_STATEMENT_TIMEOUT_MS = 15_000
# A replica that stops talking mid-write (hung, partitioned) releases the writer lock: set
# for write transactions only, with the lock. Readers (a slow client consuming a streamed
# export) hold no lock that blocks anyone and get longer.
PG_WRITER_IDLE_TIMEOUT_MS = 30_000
PG_READER_IDLE_TIMEOUT_MS = 600_000
# Waiting for a pooled connection when all are busy: bounded, then 503.
POOL_TIMEOUT_S = 10
# SQLSTATE classes/codes that mean "the store cannot take this now", not "your request is bad":
# 08 connection, 40 serialization/deadlock, 53 resources (disk full), 57 admin shutdown or
# statement timeout, 58 I/O; 55P03 lock timeout; 25006 a read-only server (e.g. a standby
# right after failover); 42P01/42703 a schema behind this Even (not migrated yet: not ready,
# as on SQLite, where "no such table" is an OperationalError).
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_TRANSIENT_STATES = frozenset({"55P03", "25006", "42P01", "42703"})
# The chain's tripwire: a unique violation on these means two writers raced; fail closed.
_TRIPWIRE_TABLES = frozenset({"audit_records", "audit_checkpoints"})


def make_engine(url: str, *, for_migrations: bool = False) -> Engine:
    """An engine for `url`; `for_migrations` lifts the statement timeout (long DDL is fine)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"isolation_level": None, "check_same_thread": False, "timeout": 5},
            pool_pre_ping=False,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        return _postgres_engine(parsed, for_migrations=for_migrations)
    return create_engine(parsed, pool_pre_ping=True, pool_timeout=POOL_TIMEOUT_S)


def postgres_url(url: URL) -> URL:
    """`postgresql://…` means psycopg 3 here (SQLAlchemy's bare default is psycopg2)."""
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


def _postgres_engine(url: URL, *, for_migrations: bool) -> Engine:
    settings = {
        "lock_timeout": PG_LOCK_TIMEOUT_MS,
        "statement_timeout": 0 if for_migrations else PG_STATEMENT_TIMEOUT_MS,
        "idle_in_transaction_session_timeout": PG_READER_IDLE_TIMEOUT_MS,
    }
    ours = " ".join(f"-c {name}={value}" for name, value in settings.items())
    # The operator's own `?options=` may tune timeouts (later -c wins), but never durability.
    theirs = url.query.get("options", "")
    theirs = " ".join(theirs) if isinstance(theirs, tuple) else theirs
    options = f"{ours} {theirs} -c synchronous_commit=on".strip()
    connect_args: dict[str, Any] = {
        "connect_timeout": PG_CONNECT_TIMEOUT_S,
        "application_name": url.query.get("application_name", "even"),
        "options": options,
        # A peer that vanished without closing the socket is noticed in ~10 s, not hours.
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
    }
    return create_engine(
        postgres_url(url).difference_update_query(["options", "application_name"]),
        connect_args=connect_args,
        # The writer lock relies on each statement seeing what committed before it: with a
        # database default of REPEATABLE READ or SERIALIZABLE the snapshot would predate the
        # lock, the head read would be stale and every concurrent append would collide.
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        pool_timeout=POOL_TIMEOUT_S,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front; readers get a deferred (snapshot) transaction
    # so that listing and exporting never hold up grants.
    if conn.get_execution_options().get(READ_ONLY_OPTION):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# Only one writer runs at a time anyway (SQLite's file lock; PostgreSQL's writer lock), so
# threads of this process queue on a lock before they take a connection: SQLite would
# otherwise busy-poll the file (its busy handler sleeps in growing steps, which wrecks
# throughput), and on PostgreSQL each waiter would hold a pooled connection while it waits,
# starving reads and /readyz. The wait is bounded like the database's own lock_timeout.
_write_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()
WRITE_QUEUE_TIMEOUT_S = 10.0


@contextmanager
def _write_queue(engine: Engine) -> Iterator[None]:
    with _locks_guard:
        lock = _write_locks.setdefault(engine, threading.Lock())
    if not lock.acquire(timeout=WRITE_QUEUE_TIMEOUT_S):
        raise StoreUnavailable("the audit store is busy")
    try:
        with _sqlite_process_lock(engine):
            yield
    finally:
        lock.release()


_lock_files: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


@contextmanager
def _sqlite_process_lock(engine: Engine) -> Iterator[None]:
    """Queue worker processes on one SQLite file in the kernel (flock, FIFO-ish) rather than
    in SQLite's busy handler, whose growing sleeps starve some writers for seconds."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    with _locks_guard:
        fd = _lock_files.get(engine)
        if fd is None:
            fd = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
            _lock_files[engine] = fd
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def take_writer_lock(conn: Connection) -> None:
    """Join the cluster-wide writer order (PostgreSQL; SQLite's BEGIN IMMEDIATE already did).

    Held until the transaction ends; `lock_timeout` bounds the wait. The same statement (no
    extra round trip) shortens this transaction's idle timeout, so a writer that goes silent
    frees the lock for the other replicas.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "SELECT set_config('idle_in_transaction_session_timeout', "
            f"'{PG_WRITER_IDLE_TIMEOUT_MS}', true), pg_advisory_xact_lock({WRITER_LOCK_KEY})"
        )


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction in the global writer order; storage failures → StoreUnavailable.

    A conflict cannot be retried here (the body has run and may have signed something), so
    it surfaces as StoreUnavailable: 503 + Retry-After, nothing issued, the client retries.
    """
    try:
        with _write_queue(engine), engine.begin() as conn:
            take_writer_lock(conn)
            yield conn
    except (DBAPIError, PoolTimeout) as exc:
        if _store_unavailable(exc):
            log.warning("write refused, store unavailable: %s", _describe(exc))
            raise StoreUnavailable("the audit store is unavailable") from exc
        raise


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A reading connection (no writer lock): lists, exports, readiness."""
    try:
        with engine.connect() as conn:
            conn.execution_options(**{READ_ONLY_OPTION: True})
            yield conn
    except (DBAPIError, PoolTimeout) as exc:
        if _store_unavailable(exc):
            log.warning("read refused, store unavailable: %s", _describe(exc))
            raise StoreUnavailable("the store is unavailable") from exc
        raise


def is_store_unavailable(exc: BaseException) -> bool:
    """Whether an exception is a storage failure that means 503 ("unavailable, retry").

    For code that catches database errors inside a transaction (e.g. per SAVEPOINT in a
    group commit) and must still answer 503, not 500, for a timeout, a conflict or a lost
    connection.
    """
    return isinstance(exc, DBAPIError | PoolTimeout) and _store_unavailable(exc)


def _describe(exc: DBAPIError | PoolTimeout) -> str:
    # The driver's class and SQLSTATE say why; its message may quote row values, so no more.
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__} {getattr(orig, 'sqlstate', None) or ''}".strip()


def _store_unavailable(exc: DBAPIError | PoolTimeout) -> bool:
    """Whether a storage error means "unavailable now" (503) rather than a bug (500)."""
    if isinstance(exc, PoolTimeout | OperationalError | InterfaceError):
        return True
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if not isinstance(sqlstate, str):
        return False
    if sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_STATES:
        return True
    if sqlstate == "23505":
        table = getattr(getattr(exc.orig, "diag", None), "table_name", None)
        if table in _TRIPWIRE_TABLES:
            log.error("audit chain tripwire: unique violation on %s; nothing committed", table)
            return True
    return False


# -- background jobs ------------------------------------------------------------------------


def job_lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a job name (not Python's salted hash)."""
    digest = hashlib.sha256(b"even-job:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def try_job_lock(conn: Connection, name: str) -> bool:
    """Inside `transaction()`: True if this process may run job `name` now, across replicas.

    PostgreSQL: `pg_try_advisory_xact_lock`, released at commit or rollback (also when the
    replica dies). SQLite: the caller's `BEGIN IMMEDIATE` already excludes every other writer
    of the file, so the answer is True. Either way the lock only spans the transaction: a job
    must re-check its condition inside it (e.g. "still GRANTED and past valid_before"), which
    the writer order makes sound, so that a replica that runs it next finds nothing to do.
    """
    if not conn.in_transaction():
        raise RuntimeError("try_job_lock needs the caller's write transaction")
    if conn.dialect.name != "postgresql":
        return True
    row = conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({job_lock_key(name)})").first()
    return bool(row is not None and row[0])
