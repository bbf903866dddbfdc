"""Engine set-up and the one-transaction-per-use-case helper.

SQLite: WAL, `synchronous=FULL` (a granted record survives power loss before the certificate
leaves), foreign keys, and `BEGIN IMMEDIATE` so a use case that reads the audit head and then
appends holds the write lock from its first statement. pysqlite's own implicit transactions are
turned off so SQLAlchemy's BEGIN is the only one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from even.errors import StoreUnavailable

SQLITE_BUSY_TIMEOUT_MS = 5000


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"isolation_level": None, "check_same_thread": False, "timeout": 5},
            pool_pre_ping=False,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction; storage failures become StoreUnavailable (503, nothing issued)."""
    try:
        with engine.begin() as conn:
            yield conn
    except OperationalError as exc:
        raise StoreUnavailable("the audit store is unavailable") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable("the audit store connection was lost") from exc
        raise


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    try:
        with engine.connect() as conn:
            yield conn
    except OperationalError as exc:
        raise StoreUnavailable("the store is unavailable") from exc
