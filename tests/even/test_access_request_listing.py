"""Listing access requests: newest first, also within one second of `created`."""

from __future__ import annotations

import time
from pathlib import Path

from even.ids import new_request_id
from even.store import access_requests
from even.store.db import make_engine, read_only
from even.store.schema import upgrade

SECOND = "2026-12-06T20:00:00Z"


def _row(request_id: str) -> dict[str, object]:
    return access_requests.row(
        id=request_id, status="GRANTED", username="alice", login="alice",
        hostname="db-1.prod.even.test", mode="certificate", reason="debug INC-1",
        lifetime_minutes=30, principals="[]", created=SECOND, last_modified=SECOND,
    )  # fmt: skip


def test_requests_of_one_second_list_newest_first(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'even.db'}", for_migrations=True)
    try:
        upgrade(engine)
        ids = []
        for _ in range(5):
            ids.append(new_request_id())  # UUIDv7: ids of later milliseconds sort higher
            time.sleep(0.002)
        assert ids == sorted(ids)
        with engine.begin() as conn:
            for request_id in ids:
                conn.execute(access_requests.INSERT_REQUEST, _row(request_id))
        with read_only(engine) as conn:
            listed = access_requests.search(conn, username="alice", limit=10, offset=0)
            first_page = access_requests.search(conn, username="alice", limit=2, offset=0)
        assert [r["id"] for r in listed] == ids[::-1]
        assert [r["id"] for r in first_page] == ids[::-1][:2]
    finally:
        engine.dispose()
