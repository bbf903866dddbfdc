"""Migration 0009: UNIQUE(prev_hash) gives way to a trigger that links each record to the last."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from audit import store as audit_store
from audit.chain import GENESIS_HASH, AuditEvent
from even.store.db import make_engine
from tests.even.audit_migrations import migrate, unique_columns

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _insert(engine: Engine, row: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(audit_store.INSERT_RECORD, row)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'even.db'}", for_migrations=True)
    yield engine
    engine.dispose()


def test_upgrade_keeps_rows_and_guards_and_links_every_record(engine: Engine) -> None:
    migrate(engine, "0008")
    with engine.begin() as conn:
        for n in range(5):
            audit_store.append(conn, AuditEvent(type="test.event", request_id=f"r{n}"), NOW)
    with engine.connect() as conn:
        before = conn.execute(select(audit_store.audit_records)).all()
    assert unique_columns(engine) == [["prev_hash"]]

    migrate(engine, "0009")
    assert unique_columns(engine) == []
    with engine.connect() as conn:
        assert conn.execute(select(audit_store.audit_records)).all() == before
        indexes = {i["name"] for i in inspect(conn).get_indexes("audit_records")}
        assert "ix_audit_records_request_id" in indexes
    last = before[-1]._asdict()
    refused = {
        # a second successor of record 4 (what UNIQUE(prev_hash) caught)
        "fork": last | {"seq": 6, "prev_hash": before[3].hash, "hash": "e" * 64},
        "gap": last | {"seq": 7, "prev_hash": last["hash"], "hash": "e" * 64},
        "wrong link": last | {"seq": 6, "prev_hash": "f" * 64, "hash": "e" * 64},
        "duplicate seq": last | {"prev_hash": before[3].hash},
        "seq 0": last | {"seq": 0, "prev_hash": GENESIS_HASH},
    }
    for name, row in refused.items():
        try:
            _insert(engine, row)
        except IntegrityError:
            continue
        pytest.fail(f"the {name} was stored")
    for statement in ("UPDATE audit_records SET reason = 'x'", "DELETE FROM audit_records"):
        with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.begin() as conn:
        audit_store.append(conn, AuditEvent(type="test.event"), NOW)
        assert audit_store.head(conn)[0] == 6

    migrate(engine, "0008", down=True)
    assert unique_columns(engine) == [["prev_hash"]]
    with engine.connect() as conn:
        assert len(conn.execute(select(audit_store.audit_records)).all()) == 6


def test_the_first_record_must_follow_genesis(engine: Engine) -> None:
    migrate(engine, "0009")
    event = AuditEvent(type="test.event")
    _record, row = audit_store.sealed_row(event, NOW, seq=1, prev_hash="a" * 64)
    with pytest.raises(IntegrityError, match="link"):
        _insert(engine, row)
    _record, row = audit_store.sealed_row(event, NOW, seq=1, prev_hash=GENESIS_HASH)
    _insert(engine, row)


def test_tables_built_from_metadata_get_the_same_trigger(tmp_path: Path) -> None:
    # Tests and benchmarks build the audit tables from audit.store's metadata.
    engine = make_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    with engine.begin() as conn:
        audit_store.metadata.create_all(conn)
        audit_store.install_append_only_guards(conn)
        audit_store.append(conn, AuditEvent(type="test.event"), NOW)
    _record, row = audit_store.sealed_row(AuditEvent(type="x"), NOW, seq=2, prev_hash="b" * 64)
    with pytest.raises(IntegrityError, match="link"):
        _insert(engine, row)
    engine.dispose()
