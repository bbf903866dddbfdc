"""The unit of work (even.store.unit_of_work): what use cases write, committed as one step.

Units of one group commit chain their audit records on each other; a statement sees the rows
deferred before it; a unit that fails leaves nothing of its own, and other units of the batch
still commit; several records and row changes of one unit commit together or not at all.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from audit import store as audit_store
from audit.chain import GENESIS_HASH, AuditEvent, record_hash
from even.store.db import make_engine
from even.store.unit_of_work import Transaction, commit, commit_work
from even.store.writer import GroupCommitWriter

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'u.db'}")
    with engine.begin() as conn:
        audit_store.metadata.create_all(conn)
        conn.execute(text("CREATE TABLE outbox (n INTEGER PRIMARY KEY, seq INTEGER NOT NULL)"))
    return engine


@dataclass(frozen=True)
class Step:
    """Two records and an outbox row naming the second: one atomic unit."""

    n: int
    fail: bool = False

    def apply(self, tx: Transaction) -> int:
        tx.append(AuditEvent(type="access.requested", username=f"u{self.n}"), NOW)
        second = tx.append(AuditEvent(type="access.granted", username=f"u{self.n}"), NOW)
        tx.insert(text("INSERT INTO outbox VALUES (:n, :seq)"), {"n": self.n, "seq": second["seq"]})
        # A statement after a deferred insert sees it.
        seen = tx.execute(text("SELECT count(*) FROM outbox WHERE n = :n"), {"n": self.n})
        assert seen.scalar_one() == 1
        if self.fail:
            raise RuntimeError("this unit fails after writing")
        return int(second["seq"])


def _records(engine) -> list[dict]:
    with engine.connect() as conn:
        return list(audit_store.iter_records(conn))


def test_units_of_one_group_commit_chain_and_a_failing_one_leaves_nothing(engine) -> None:
    writer = GroupCommitWriter(engine)
    steps = [Step(n, fail=(n == 5)) for n in range(1, 21)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(writer.commit, step) for step in steps]
    outcomes = {}
    for step, future in zip(steps, futures, strict=True):
        try:
            outcomes[step.n] = future.result()
        except RuntimeError:
            outcomes[step.n] = None
    writer.close()
    assert outcomes[5] is None and all(outcomes[n] for n in outcomes if n != 5)
    records = _records(engine)
    assert [r["seq"] for r in records] == list(range(1, 39))  # 19 units × 2, no gap
    assert records[0]["prev_hash"] == GENESIS_HASH
    assert all(r["hash"] == record_hash(r) for r in records)
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(records))
    assert "u5" not in {r["username"] for r in records}
    with engine.connect() as conn:
        outbox = dict(conn.execute(text("SELECT n, seq FROM outbox")).all())
    # Each outbox row names its own unit's record: written in the same transaction.
    assert outbox == {n: seq for n, seq in outcomes.items() if seq is not None}
    by_seq = {r["seq"]: r for r in records}
    assert all(by_seq[seq]["username"] == f"u{n}" for n, seq in outbox.items())


def test_a_unit_of_its_own_commits_or_leaves_nothing(engine) -> None:
    assert commit(engine, Step(1)) == 2
    with pytest.raises(RuntimeError):
        commit(engine, Step(2, fail=True))
    assert commit_work(engine, lambda tx: tx.append(AuditEvent(type="x"), NOW))["seq"] == 3
    assert [r["username"] for r in _records(engine)] == ["u1", "u1", None]


def test_cached_loads_once_per_transaction(engine) -> None:
    loads = []

    def load(conn) -> int:
        loads.append(1)
        return len(loads)

    assert commit_work(engine, lambda tx: (tx.cached("k", load), tx.cached("k", load))) == (1, 1)
    assert commit_work(engine, lambda tx: tx.cached("k", load)) == 2
