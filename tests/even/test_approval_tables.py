"""The approvals tables on SQLite (migration 0003): an approver counts once per request, and
the revision goes down and up cleanly. PostgreSQL's privileges are in tests/integration."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from even.store.db import make_engine
from even.store.schema import alembic_config, head_revision, upgrade

INSERT = (
    "INSERT INTO approvals (request_id, approver, time, comment) "
    "VALUES (:request_id, :approver, '2026-12-06T14:00:00Z', NULL)"
)


def test_an_approver_counts_once(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'even.db'}")
    try:
        assert upgrade(engine) == head_revision()
        with engine.begin() as conn:
            conn.execute(text(INSERT), {"request_id": "r1", "approver": "carol"})
            conn.execute(text(INSERT), {"request_id": "r1", "approver": "dave"})
            conn.execute(text(INSERT), {"request_id": "r2", "approver": "carol"})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(INSERT), {"request_id": "r1", "approver": "carol"})
    finally:
        engine.dispose()


def test_0003_goes_down_and_up(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'even.db'}")
    try:
        upgrade(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        assert not {"approvals", "approval_states"} & set(inspect(engine).get_table_names())
        assert upgrade(engine) == head_revision()
        assert {"approvals", "approval_states"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
