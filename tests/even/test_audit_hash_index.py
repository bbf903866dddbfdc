"""Migration 0008: audit records lose the UNIQUE(hash) index and keep every other guard."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from audit import store as audit_store
from audit.chain import AuditEvent
from even.store.db import make_engine
from even.store.schema import alembic_config

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
REVISION = "0008"
# The revision before it, whichever that is once revisions merged meanwhile are chained in.
BEFORE = ScriptDirectory.from_config(alembic_config()).get_revision(REVISION).down_revision


def _migrate(engine: Engine, revision: Any, *, down: bool = False) -> None:
    with engine.begin() as conn:
        if down:
            command.downgrade(alembic_config(conn), revision)
        else:
            command.upgrade(alembic_config(conn), revision)


def _unique_columns(engine: Engine) -> list[list[str]]:
    with engine.connect() as conn:
        indexes = inspect(conn).get_indexes("audit_records")
        constraints = inspect(conn).get_unique_constraints("audit_records")
    found = [list(c["column_names"]) for c in constraints]
    found += [list(i["column_names"]) for i in indexes if i.get("unique")]
    return sorted(found)


def test_the_rebuilt_table_keeps_rows_chain_guards_and_index(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'even.db'}", for_migrations=True)
    _migrate(engine, BEFORE)
    with engine.begin() as conn:
        for n in range(5):
            audit_store.append(conn, AuditEvent(type="test.event", request_id=f"r{n}"), NOW)
    with engine.connect() as conn:
        before = conn.execute(select(audit_store.audit_records)).all()
    assert _unique_columns(engine) == [["hash"], ["prev_hash"]]

    _migrate(engine, REVISION)
    assert _unique_columns(engine) == [["prev_hash"]]
    with engine.connect() as conn:
        assert conn.execute(select(audit_store.audit_records)).all() == before
        indexes = {i["name"] for i in inspect(conn).get_indexes("audit_records")}
        assert "ix_audit_records_request_id" in indexes
        assert audit_store.head(conn) == (5, before[-1].hash)
    # Append-only still: no update, no delete.
    for statement in ("UPDATE audit_records SET reason = 'x'", "DELETE FROM audit_records"):
        with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    # A fork (a second record naming the same predecessor) still fails.
    row = before[-1]._asdict() | {"seq": 99}
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(audit_store.INSERT_RECORD, row)
    # And a duplicate seq too.
    row = before[-1]._asdict() | {"prev_hash": "f" * 64}
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(audit_store.INSERT_RECORD, row)
    with engine.begin() as conn:
        audit_store.append(conn, AuditEvent(type="test.event"), NOW)
        assert audit_store.head(conn)[0] == 6

    _migrate(engine, BEFORE, down=True)
    assert _unique_columns(engine) == [["hash"], ["prev_hash"]]
    with engine.connect() as conn:
        assert len(conn.execute(select(audit_store.audit_records)).all()) == 6
    with pytest.raises((IntegrityError, OperationalError)), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records"))
    engine.dispose()
