"""Migration 0008: audit records lose the UNIQUE(hash) index and keep every other guard."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from audit import store as audit_store
from audit.chain import AuditEvent
from even.store.db import make_engine
from even.store.schema import alembic_config
from tests.even.audit_migrations import migrate, unique_columns

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
REVISION = "0008"
# The revision before it, whichever that is once revisions merged meanwhile are chained in.
BEFORE = ScriptDirectory.from_config(alembic_config()).get_revision(REVISION).down_revision


def test_the_rebuilt_table_keeps_rows_chain_guards_and_index(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'even.db'}", for_migrations=True)
    migrate(engine, BEFORE)
    with engine.begin() as conn:
        for n in range(5):
            audit_store.append(conn, AuditEvent(type="test.event", request_id=f"r{n}"), NOW)
    with engine.connect() as conn:
        before = conn.execute(select(audit_store.audit_records)).all()
    assert unique_columns(engine) == [["hash"], ["prev_hash"]]

    migrate(engine, REVISION)
    assert unique_columns(engine) == [["prev_hash"]]
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

    migrate(engine, BEFORE, down=True)
    assert unique_columns(engine) == [["hash"], ["prev_hash"]]
    with engine.connect() as conn:
        assert len(conn.execute(select(audit_store.audit_records)).all()) == 6
    with pytest.raises((IntegrityError, OperationalError)), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records"))
    engine.dispose()
