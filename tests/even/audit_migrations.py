"""Shared by the audit-table migration tests (0008, 0009): migrate a SQLite file, read keys."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import Engine, inspect

from even.store.schema import alembic_config


def migrate(engine: Engine, revision: Any, *, down: bool = False) -> None:
    with engine.begin() as conn:
        if down:
            command.downgrade(alembic_config(conn), revision)
        else:
            command.upgrade(alembic_config(conn), revision)


def unique_columns(engine: Engine) -> list[list[str]]:
    """The audit table's UNIQUE constraints and unique indexes, as sorted column lists."""
    with engine.connect() as conn:
        indexes = inspect(conn).get_indexes("audit_records")
        constraints = inspect(conn).get_unique_constraints("audit_records")
    found = [list(c["column_names"]) for c in constraints]
    found += [list(i["column_names"]) for i in indexes if i.get("unique")]
    return sorted(found)
