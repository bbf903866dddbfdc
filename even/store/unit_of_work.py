"""A unit of work: what one write transaction records, as the use cases see it.

A use case describes its writes as a `Unit` (an object with `apply(tx) -> result`) and hands
it to `commit` (one transaction of its own) or to the group-commit writer
(`even.store.writer.GroupCommitWriter.commit`, many units in one transaction). Either way the
unit sees only a `Transaction`:

- `append(event, now)`: the next audit record. The transaction knows its own head after its
  first append, so the units of a group commit chain on each other without reading it again.
- `insert(statement, row)`: a plain INSERT that nothing in this transaction reads back (an
  access request, a serial, an outbox message). A grouped transaction defers these to one
  executemany per statement just before the commit; a transaction of its own runs them at once.
- `execute(statement)`: anything else (reads, UPDATEs). Deferred inserts run first, so a
  statement always sees every row written before it in this transaction.
- `cached(key, load)`: a fact established once per transaction (the signing CA: the write
  lock is held throughout, so it cannot change underneath).

Every audit record Even writes goes through `Transaction.append` (code that holds a bare
connection calls `append_record`, which uses the connection's unit of work if it runs in one):
it is the one place that also hands the sealed record to the engine's record hook
(`set_record_hook`; the notification outbox, even.store.outbox_hook), inside the same
transaction. Every Transaction looks the hook up from its connection's engine itself, so
none, however it was made, can skip it. No hook (no subscription) costs one lookup per
transaction.

Invariants: a Transaction lives for one transaction attempt only (a rolled-back attempt can
never leak a head or a memo that was not committed); every row and record a unit wrote
commits with it or not at all, so several records, row updates and an outbox row written by
one unit are one atomic step; the rows the record hook writes for a record belong to that
record's transaction, never another's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy.engine import Connection, Engine

from audit import store as audit_store
from audit.chain import AuditEvent, SealTemplate
from even.store.db import transaction
from even.store.inserts import execute_many

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
# The key under which a connection carries the unit of work it is running (group commit).
TRANSACTION = "even.unit_of_work"
RecordHook = Callable[["Transaction", dict[str, Any], datetime], None]
_HOOKS: WeakKeyDictionary[Engine, RecordHook] = WeakKeyDictionary()


def set_record_hook(engine: Engine, hook: RecordHook | None) -> None:
    """Call `hook(tx, record, now)` for every record appended through `engine` (None: stop)."""
    if hook is None:
        _HOOKS.pop(engine, None)
    else:
        _HOOKS[engine] = hook


def record_hook(engine: Engine) -> RecordHook | None:
    return _HOOKS.get(engine)


class Unit(Protocol[T_co]):
    """Writes to commit together; `apply` may raise to roll all of them back."""

    def apply(self, tx: Transaction) -> T_co: ...


class Transaction:
    __slots__ = ("_defer", "_head", "_hook", "_memo", "_pending", "conn")

    def __init__(self, conn: Connection, *, defer: bool) -> None:
        self.conn = conn
        self._defer = defer
        # Resolved here, not passed in: no Transaction on an engine with a hook can miss it.
        self._hook = record_hook(conn.engine)
        self._head: tuple[int, str] | None = None
        self._memo: dict[str, Any] = {}
        # Deferred INSERTs by statement, in first-use order; rows in the order they came.
        self._pending: dict[Any, list[dict[str, Any]]] = {}

    def append(self, event: AuditEvent | SealTemplate, now: datetime) -> dict[str, Any]:
        """Append the next audit record; returns it (with its seq and hash)."""
        head = self._head
        if head is None:
            self.flush()  # a record inserted by hand earlier must be the head we read
            head = audit_store.head(self.conn)
        record, row = audit_store.sealed_row(event, now, seq=head[0] + 1, prev_hash=head[1])
        self.insert(audit_store.INSERT_RECORD, row)
        self._head = (record["seq"], record["hash"])
        if self._hook is not None:
            self._hook(self, record, now)  # its outbox rows: in this transaction, after it
        return record

    def insert(self, statement: Any, row: dict[str, Any]) -> None:
        """INSERT `row`: at once, or with the others just before a grouped commit."""
        if self._defer:
            pending = self._pending.get(statement)
            if pending is None:
                self._pending[statement] = [row]
            else:
                pending.append(row)
        else:
            self.conn.execute(statement, row)

    def execute(self, statement: Any, parameters: Any = None) -> Any:
        """Run any other statement, after the deferred inserts (it may read them)."""
        if self._pending:
            self.flush()
        if parameters is None:
            return self.conn.execute(statement)
        return self.conn.execute(statement, parameters)

    def cached(self, key: str, load: Callable[[Connection], T]) -> T:
        """`load(conn)` once per transaction (the write lock keeps its answer true)."""
        try:
            value: T = self._memo[key]
        except KeyError:
            value = self._memo[key] = load(self.conn)
        return value

    def flush(self) -> None:
        """Run the deferred inserts (done before the commit; before other statements too)."""
        if self._pending:
            pending, self._pending = self._pending, {}
            for statement, rows in pending.items():
                execute_many(self.conn, statement, rows)


def commit(engine: Engine, unit: Unit[T]) -> T:
    """Apply `unit` in a write transaction of its own; return once that has committed."""
    with transaction(engine) as conn:
        return unit.apply(Transaction(conn, defer=False))


def commit_work(engine: Engine, work: Callable[[Transaction], T]) -> T:
    """`commit` for a plain function of the transaction."""
    with transaction(engine) as conn:
        return work(Transaction(conn, defer=False))


def append_record(
    conn: Connection, event: AuditEvent | SealTemplate, now: datetime
) -> dict[str, Any]:
    """Append a record from code holding a bare connection inside a write transaction: through
    the unit of work the connection runs (group commit), else a one-off one on it, so the
    record hook sees every record whichever way it was written."""
    tx = conn.info.get(TRANSACTION)
    if not isinstance(tx, Transaction):
        tx = Transaction(conn, defer=False)
    return tx.append(event, now)
