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


def test_coroutines_get_their_own_results_in_one_wake_up_per_batch(engine) -> None:
    import asyncio

    writer = GroupCommitWriter(engine)
    wake_ups = 0

    async def main() -> list[object]:
        nonlocal wake_ups
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counting(*args, **kwargs):
            nonlocal wake_ups
            wake_ups += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]

        async def insert(n: int) -> object:
            def work(conn) -> int:
                if n == 7:
                    raise ValueError("piece 7 fails alone")
                conn.execute(text(f"INSERT INTO t VALUES ({n})"))
                return n

            try:
                return await writer.run_async(work)
            except ValueError as exc:
                return str(exc)

        return await asyncio.gather(*(insert(n) for n in range(1, 201)))

    results = asyncio.run(main())
    writer.close()
    assert results == [n if n != 7 else "piece 7 fails alone" for n in range(1, 201)]
    assert _count(engine) == 199
    # One wake-up per batch (a failing batch reran its pieces alone, still one delivery).
    assert wake_ups <= writer.batches < 199, (wake_ups, writer.batches)


def test_deferred_inserts_run_before_the_commit_and_fail_alone(engine) -> None:
    from even.store.writer import insert_row

    writer = GroupCommitWriter(engine)
    statement = text("INSERT INTO t VALUES (:n)")

    def work(n: int):
        return lambda conn: insert_row(conn, statement, {"n": n}) or n

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(writer.run, work(n)) for n in [1, 2, 3, 2, 4]]
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except Exception as exc:
                outcomes.append(type(exc).__name__)
    writer.close()
    # The duplicate 2 fails at the deferred INSERT; every other piece commits.
    assert sorted(o for o in outcomes if isinstance(o, int)) == [1, 2, 3, 4]
    assert sum(1 for o in outcomes if not isinstance(o, int)) == 1
    assert _count(engine) == 4


def test_deferred_table_inserts_go_to_the_driver_only_when_nothing_is_added_per_row(
    engine,
) -> None:
    from sqlalchemy import Column, Integer, MetaData, String, Table

    from even.store.inserts import _driver_plan
    from even.store.writer import insert_row

    table = Table(
        "u",
        MetaData(),
        Column("n", Integer, primary_key=True),
        Column("label", String(8)),
        Column("kind", String(8), default="plain"),
    )
    with engine.begin() as conn:
        table.create(conn)
    statement = table.insert()
    full = {"n": 1, "label": "a", "kind": "x"}
    # Every column given: the driver's SQL, parameters in its order (whatever the row's).
    plan = _driver_plan(statement, engine.dialect, ("kind", "n", "label"))
    assert plan is not None
    sql, parameters = plan
    assert sql == "INSERT INTO u (n, label, kind) VALUES (?, ?, ?)"
    assert parameters({"kind": "x", "n": 1, "label": "a"}) == (1, "a", "x")
    # One column: still a tuple (itemgetter of one key would give the bare value).
    single = Table("v", MetaData(), Column("n", Integer, primary_key=True))
    one = _driver_plan(single.insert(), engine.dialect, ("n",))
    assert one is not None and one[1]({"n": 7}) == (7,)
    # A default to fill in, or not an INSERT of a table: SQLAlchemy's way.
    assert _driver_plan(statement, engine.dialect, ("n", "label")) is None
    assert _driver_plan(text("INSERT INTO t VALUES (:n)"), engine.dialect, ("n",)) is None

    writer = GroupCommitWriter(engine)
    rows = [
        full,
        {"kind": "y", "n": 2, "label": "b"},
        {"n": 3, "label": "c"},
        {"n": 4, "label": None},
    ]

    def work(row):
        return lambda conn: insert_row(conn, statement, row)

    for row in rows[:2]:  # one batch each: keys in any order
        writer.run(work(row))
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(writer.run, [work(row) for row in rows[2:]]))
    writer.close()
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT n, label, kind FROM u ORDER BY n")).all()
    assert [tuple(r) for r in stored] == [
        (1, "a", "x"),
        (2, "b", "y"),
        (3, "c", "plain"),
        (4, None, "plain"),
    ]


def test_work_queued_while_the_lock_is_awaited_joins_the_same_commit(engine) -> None:
    import threading
    import time

    from even.store.db import transaction

    writer = GroupCommitWriter(engine)
    holding = threading.Event()
    release = threading.Event()

    def hold_the_lock() -> None:
        with transaction(engine):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(10)

    def work(n: int):
        return lambda conn: conn.execute(text(f"INSERT INTO t VALUES ({n})")) and n

    futures = [writer.submit(work(1))]
    deadline = time.monotonic() + 10
    while not writer._queue.empty() and time.monotonic() < deadline:
        time.sleep(0.001)  # the writer took the first piece and waits for the lock
    futures += [writer.submit(work(n)) for n in range(2, 7)]
    release.set()
    holder.join()
    assert [f.result(timeout=10) for f in futures] == [1, 2, 3, 4, 5, 6]
    writer.close()
    # One wait for the lock, one commit for all six.
    assert (writer.batches, writer.items) == (1, 6)


def test_when_the_lock_cannot_be_had_everything_queued_gets_its_503_at_once(
    engine, monkeypatch
) -> None:
    import threading
    import time

    from even.errors import StoreUnavailable
    from even.store import db

    monkeypatch.setattr(db, "WRITE_QUEUE_TIMEOUT_S", 0.3)
    writer = GroupCommitWriter(engine)
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with db.transaction(engine):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(10)
    started = time.monotonic()
    futures = [writer.submit(lambda conn: 1)]
    while not writer._queue.empty() and time.monotonic() < started + 10:
        time.sleep(0.001)  # the writer took the first piece and waits for the lock
    futures += [writer.submit(lambda conn: 1) for _ in range(9)]
    failures = []
    for future in futures:
        with pytest.raises(StoreUnavailable):
            future.result(timeout=10)
        failures.append(time.monotonic() - started)
    release.set()
    holder.join()
    writer.close()
    # One wait for all ten (each waiting its own turn would take ten).
    assert max(failures) < 3 * 0.3, failures


def test_the_driver_path_is_taken_only_where_it_stores_the_same(engine, monkeypatch) -> None:
    from datetime import datetime

    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table
    from sqlalchemy.engine import Connection

    from even.store.inserts import _driver_plan
    from even.store.writer import insert_row

    metadata = MetaData()
    plain = Table("p", metadata, Column("n", Integer, primary_key=True), Column("s", String(8)))
    dated = Table("d", metadata, Column("n", Integer, primary_key=True), Column("at", DateTime))
    with engine.begin() as conn:
        metadata.create_all(conn)
    # SQLite's DateTime converts its value (the generic type does not): SQLAlchemy's way.
    assert _driver_plan(dated.insert(), engine.dialect, ("n", "at")) is None
    driver_calls: list[str] = []
    original = Connection.exec_driver_sql

    def spy(self, statement, *args, **kwargs):
        driver_calls.append(statement)
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(Connection, "exec_driver_sql", spy)
    moment = datetime(2024, 1, 2, 3, 4, 5)
    writer = GroupCommitWriter(engine)
    writer.run(lambda conn: insert_row(conn, plain.insert(), {"n": 1, "s": "a"}))
    writer.run(lambda conn: insert_row(conn, dated.insert(), {"n": 1, "at": moment}))
    writer.close()
    assert [c for c in driver_calls if c.startswith("INSERT")] == [
        "INSERT INTO p (n, s) VALUES (?, ?)"
    ]
    with engine.connect() as conn:
        assert conn.execute(dated.select()).one() == (1, moment)
