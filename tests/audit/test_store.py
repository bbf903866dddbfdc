from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DatabaseError

from audit import store
from audit.chain import GENESIS_HASH, AuditEvent, record_hash


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.begin() as conn:
        store.metadata.create_all(conn)
        store.install_append_only_guards(conn)
    return engine


def test_append_chains_and_reads_back(engine) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        a = store.append(conn, AuditEvent(type="policy.loaded", details={"sha256": "x"}), now)
        b = store.append(conn, AuditEvent(type="access.requested", username="alice"), now)
    assert (a["seq"], a["prev_hash"]) == (1, GENESIS_HASH)
    assert (b["seq"], b["prev_hash"]) == (2, a["hash"])
    with engine.connect() as conn:
        records = list(store.iter_records(conn, batch=1))
    assert [r["seq"] for r in records] == [1, 2]
    assert all(record_hash(r) == r["hash"] for r in records)
    assert records[0]["time"] == "2026-01-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_records SET reason = 'rewritten' WHERE seq = 1",
        "DELETE FROM audit_records WHERE seq = 1",
        "DELETE FROM audit_records",
    ],
)
def test_storage_refuses_update_and_delete(engine, statement: str) -> None:
    with engine.begin() as conn:
        store.append(conn, AuditEvent(type="policy.loaded"), datetime.now(UTC))
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    with engine.connect() as conn:
        assert len(list(store.iter_records(conn))) == 1
