"""Group commit: batched work commits together, failures stay with their own caller."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from even.store.db import make_engine
from even.store.writer import GroupCommitWriter


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    return engine


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM t")).scalar_one()


def test_concurrent_work_is_batched_and_each_caller_gets_its_result(engine) -> None:
    writer = GroupCommitWriter(engine)

    def work(n: int) -> int:
        return writer.run(lambda conn: conn.execute(text(f"INSERT INTO t VALUES ({n})")) and n)

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(work, range(1, 301)))
    writer.close()
    assert results == list(range(1, 301))
    assert _count(engine) == 300
    assert writer.items == 300 and writer.batches < 300


def test_a_failing_piece_rolls_back_alone(engine) -> None:
    writer = GroupCommitWriter(engine)
    writer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))

    def duplicate(conn):
        conn.execute(text("INSERT INTO t VALUES (2)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))  # violates the key: whole piece undone

    with pytest.raises(Exception, match="UNIQUE"):
        writer.run(duplicate)
    writer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (3)")))
    writer.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM t ORDER BY n")).scalars().all() == [1, 3]
