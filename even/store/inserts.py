"""Many rows of one INSERT at once: the driver's own executemany where that stores the same.

Used by the unit of work (even.store.unit_of_work) for the INSERTs a grouped transaction
defers to its end. Besides SQL overhead this saves the GIL: every statement releases it and
must win it back from the event loop thread, which costs up to a switch interval each time.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.engine import Connection, Dialect


def execute_many(conn: Connection, statement: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT `rows` (all with the same keys) in one executemany."""
    plan = _driver_plan(statement, conn.dialect, tuple(rows[0]))
    if plan is None:
        conn.execute(statement, rows)
    else:
        sql, parameters = plan
        conn.exec_driver_sql(sql, list(map(parameters, rows)))


# A row's parameters in the statement's order, as a tuple (itemgetter: one C call per row).
_Parameters = Callable[[dict[str, Any]], tuple[Any, ...]]
# (statement, dialect name, row keys) -> (SQL, parameters of a row), or None for SQLAlchemy's.
_plans: dict[tuple[Any, str, str, tuple[str, ...]], tuple[str, _Parameters] | None] = {}


def _parameters(order: tuple[str, ...]) -> _Parameters:
    if len(order) == 1:  # itemgetter of one key returns the value, not a 1-tuple
        (key,) = order
        return lambda row: (row[key],)
    return itemgetter(*order)


def _driver_plan(
    statement: Any, dialect: Dialect, keys: tuple[str, ...]
) -> tuple[str, _Parameters] | None:
    """The INSERT as the driver's own SQL, when SQLAlchemy would add nothing per row.

    SQLAlchemy's executemany builds and type-processes every row's parameters (~6 us a row
    here); the driver takes plain tuples. That is only the same thing when the compiled
    statement's parameters are exactly the row's keys (no defaults to fill in), no column
    type converts its value, and the paramstyle is positional; otherwise None.
    """
    cache_key = (statement, dialect.name, dialect.paramstyle, keys)
    if cache_key in _plans:
        return _plans[cache_key]
    plan = None
    if not isinstance(statement, Insert):
        _plans[cache_key] = None
        return None
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    order = compiled.positiontup
    columns = statement.table.c
    if (
        order is not None
        and set(compiled.binds) == set(keys) == set(order)
        and len(order) == len(keys)
        # The dialect's own type (SQLite's DateTime converts, the generic one does not).
        and all(
            columns[key].type.dialect_impl(dialect).bind_processor(dialect) is None for key in keys
        )
    ):
        plan = (compiled.string, _parameters(tuple(order)))
    _plans[cache_key] = plan
    return plan
