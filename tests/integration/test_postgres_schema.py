"""Issue 6: migrations on both backends, the app role's privileges and the append-only guards.

Against a throwaway PostgreSQL cluster this module starts (or EVEN_TEST_DATABASE_URL):
- the migrated schema equals the models (SQLite and PostgreSQL), and every table has a
  decided set of app-role privileges;
- `even db upgrade --app-role` migrates with the owner URL and grants;
- as the app role, UPDATE, DELETE and TRUNCATE on the audit tables fail (privileges), and as
  the owner (and even a superuser in replica mode) they fail too (ENABLE ALWAYS triggers);
- `serve` runs no DDL: `/readyz` is 503 on an unmigrated database until `even db upgrade`;
- a database locked past `lock_timeout` is StoreUnavailable (503), and job locks exclude.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from audit import store as audit_store
from audit.chain import AuditEvent
from even.api.app import create_app
from even.config import load_settings
from even.errors import StoreUnavailable
from even.store.db import (
    WRITER_LOCK_KEY,
    is_store_unavailable,
    job_lock_key,
    make_engine,
    read_only,
    take_writer_lock,
    transaction,
    try_job_lock,
)
from even.store.schema import (
    APP_GRANTS,
    current_revision,
    head_revision,
    target_metadata,
    upgrade,
)
from harness.even_server import even_command
from harness.postgres import PostgresCluster, PostgresDatabase
from tests.conftest import make_even_dir

pytestmark = [pytest.mark.postgres]

APPEND_ONLY = ("audit_records", "audit_checkpoints")


def _drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, target_metadata())
    return list(diffs)


def test_sqlite_migrations_match_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'even.db'}")
    assert upgrade(engine) == head_revision()
    assert upgrade(engine) == head_revision()  # idempotent
    assert _drift(engine) == []
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        triggers = {
            row[0]
            for row in conn.execute(text("SELECT name FROM sqlite_master WHERE type='trigger'"))
        }
    append_only = {f"{t}_no_{a}" for t in APPEND_ONLY for a in ("update", "delete")}
    assert triggers == append_only | {"audit_records_link"}  # 0009: each record links back


def test_postgres_migrations_match_the_models_and_every_table_has_grants(
    postgres: PostgresCluster,
) -> None:
    database = postgres.create_database("even_drift")
    engine = make_engine(database.owner_url, for_migrations=True)
    try:
        assert upgrade(engine, app_role=database.app_role) == head_revision()
        assert _drift(engine) == []
        tables = set(inspect(engine).get_table_names())
        assert tables - set(APP_GRANTS) == set(), "decide the app role's privileges"
        with engine.connect() as conn:
            triggers = conn.execute(
                text("SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal")
            ).all()
    finally:
        engine.dispose()
    # 'A' = ENABLE ALWAYS: fires even with session_replication_role = replica.
    expected = {(f"{t}_no_{a}", "A") for t in APPEND_ONLY for a in ("update", "delete", "truncate")}
    assert set(triggers) == expected | {("audit_records_link", "A")}


@pytest.fixture(scope="module")
def migrated(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> PostgresDatabase:
    """The cluster's database migrated by `even db upgrade --app-role`, with one record and
    one checkpoint appended by the app role."""
    directory = tmp_path_factory.mktemp("even")
    config = make_even_dir(directory)
    database = postgres.database
    env = {
        **os.environ,
        "EVEN_DATABASE_URL": database.app_url,
        "EVEN_DATABASE_ADMIN_URL": database.owner_url,
    }
    done = subprocess.run(
        [
            *even_command(),
            "db",
            "upgrade",
            "--config",
            str(config),
            "--app-role",
            database.app_role,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"schema at revision {head_revision()} (head); privileges granted to {database.app_role}"
    )
    app = make_engine(database.app_url)
    try:
        with transaction(app) as conn:
            record = audit_store.append(conn, AuditEvent(type="policy.loaded"), datetime.now(UTC))
            audit_store.add_checkpoint(
                conn,
                {
                    "size": 1,
                    "origin": "test",
                    "head": record["hash"],
                    "time": record["time"],
                    "key_id": "0" * 64,
                    "signature": "AA==",
                },
            )
        with app.connect() as conn:
            assert current_revision(conn) == head_revision()  # the app may read the revision
    finally:
        app.dispose()
    return database


CHANGES = {
    "update": "UPDATE {table} SET time = time",
    "delete": "DELETE FROM {table}",
    "truncate": "TRUNCATE {table}",
}


def _refusal(url: str, statement: str) -> str:
    """The SQLSTATE with which `statement` fails (it must fail)."""
    engine = make_engine(url)
    try:
        with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()
    return str(getattr(caught.value.orig, "sqlstate", ""))


@pytest.mark.parametrize("table", APPEND_ONLY)
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_app_role_cannot_change_audit_tables(
    migrated: PostgresDatabase, table: str, change: str
) -> None:
    statement = CHANGES[change].format(table=table)
    assert _refusal(migrated.app_url, statement) == "42501"  # insufficient_privilege


@pytest.mark.parametrize("table", APPEND_ONLY)
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_owner_is_stopped_by_the_triggers(
    migrated: PostgresDatabase, table: str, change: str
) -> None:
    statement = CHANGES[change].format(table=table)
    assert _refusal(migrated.owner_url, statement) == "P0001"  # the guard's RAISE EXCEPTION


def test_app_role_cannot_disable_the_guards(migrated: PostgresDatabase) -> None:
    statement = "ALTER TABLE audit_records DISABLE TRIGGER audit_records_no_update"
    assert _refusal(migrated.app_url, statement) == "42501"  # only the owner may alter


def test_replica_mode_does_not_bypass_the_guards(
    postgres: PostgresCluster, migrated: PostgresDatabase
) -> None:
    # A superuser could drop the triggers outright; what this shows is that the usual
    # "skip triggers" switch does not silently skip these (ENABLE ALWAYS).
    conninfo = {**postgres.admin_conninfo, "dbname": migrated.name}
    with psycopg.connect(**conninfo) as conn:  # type: ignore[arg-type]
        conn.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM audit_records")
        conn.rollback()
    with psycopg.connect(**conninfo) as conn:  # type: ignore[arg-type]
        assert conn.execute("SELECT count(*) FROM audit_records").fetchone() == (1,)


def test_readyz_503_until_migrated_and_serve_runs_no_ddl(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    database = postgres.create_database("even_fresh")
    config = make_even_dir(tmp_path / "even")
    # Even the owner's URL (which could create tables) must not make `serve` migrate.
    settings = load_settings(config, database_url=database.owner_url)
    engine = make_engine(database.owner_url, for_migrations=True)
    try:
        with TestClient(create_app(settings)) as client:
            answer = client.get("/readyz")
            assert answer.status_code == 503
            assert answer.headers["Retry-After"]
            assert answer.json()["checks"]["database"] is True
            assert answer.json()["checks"]["schema"] is False
            assert inspect(engine).get_table_names() == []
            upgrade(engine, app_role=database.app_role)
            answer = client.get("/readyz")
            assert answer.status_code == 200, answer.json()
            assert answer.json()["status"] == "ready"
    finally:
        engine.dispose()


def test_a_locked_database_is_store_unavailable_within_lock_timeout(
    postgres: PostgresCluster, migrated: PostgresDatabase
) -> None:
    # The operator's URL options tune timeouts (here a short lock_timeout); the writer lock
    # held elsewhere (another replica stuck mid-transaction) must give 503, not a hang.
    engine = make_engine(migrated.app_url + "?options=-c%20lock_timeout%3D300")
    conninfo = {**postgres.admin_conninfo, "dbname": migrated.name}
    try:
        with psycopg.connect(**conninfo) as holder:  # type: ignore[arg-type]
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
            started = time.monotonic()
            with pytest.raises(StoreUnavailable), transaction(engine) as conn:
                conn.execute(text("SELECT 1"))
            assert time.monotonic() - started < 3
            holder.rollback()
        with transaction(engine) as conn:  # released: writes work again, same engine
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
            assert conn.execute(text("SHOW lock_timeout")).scalar_one() == "300ms"
            # A silent writer frees the writer lock soon; a slow export reader may idle longer.
            idle = text("SHOW idle_in_transaction_session_timeout")
            assert conn.execute(idle).scalar_one() == "30s"
        with read_only(engine) as conn:
            assert conn.execute(idle).scalar_one() == "10min"
    finally:
        engine.dispose()


def test_try_job_lock_lets_one_holder_run_a_job(
    postgres: PostgresCluster, migrated: PostgresDatabase, tmp_path: Path
) -> None:
    engine = make_engine(migrated.app_url)
    conninfo = {**postgres.admin_conninfo, "dbname": migrated.name}
    try:
        with psycopg.connect(**conninfo) as other:  # type: ignore[arg-type]
            other.execute("SELECT pg_advisory_xact_lock(%s)", (job_lock_key("expiry"),))
            with transaction(engine) as conn:
                assert try_job_lock(conn, "expiry") is False  # another replica runs it
                assert try_job_lock(conn, "reconcile") is True
            other.rollback()
        with transaction(engine) as conn:
            assert try_job_lock(conn, "expiry") is True
    finally:
        engine.dispose()
    sqlite = make_engine(f"sqlite:///{tmp_path / 'even.db'}")
    with transaction(sqlite) as conn:
        assert try_job_lock(conn, "expiry") is True  # BEGIN IMMEDIATE already excludes others


def test_serials_and_chain_positions_reach_past_2_to_the_31(migrated: PostgresDatabase) -> None:
    """SPEC §4: 1 ≤ serial < 2^53; the columns and the serial sequence are 64-bit."""
    big = 2**53 - 10
    owner = make_engine(migrated.owner_url, for_migrations=True)
    with owner.begin() as conn:
        conn.execute(text(f"ALTER SEQUENCE certificate_serials_serial_seq RESTART WITH {big}"))
    app = make_engine(migrated.app_url)
    with app.begin() as conn:
        serial = conn.execute(
            text(
                "INSERT INTO certificate_serials (request_id, purpose, valid_before) "
                "VALUES ('r', 'target', '2030-01-01T00:00:00Z') RETURNING serial"
            )
        ).scalar_one()
    assert serial == big


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_app_role_may_add_approvals_but_never_change_one(
    migrated: PostgresDatabase, change: str
) -> None:
    statement = CHANGES[change].format(table="approvals")
    assert _refusal(migrated.app_url, statement) == "42501"


def test_an_approver_counts_once_per_request(migrated: PostgresDatabase) -> None:
    insert = (
        "INSERT INTO approvals (request_id, approver, time, comment) "
        "VALUES ('r-once', 'carol', '2026-12-06T14:00:00Z', NULL)"
    )
    engine = make_engine(migrated.app_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(insert))
    finally:
        engine.dispose()
    assert _refusal(migrated.app_url, insert) == "23505"  # unique_violation


def test_records_must_link_to_the_one_before(migrated: PostgresDatabase) -> None:
    # Migration 0009's trigger, as the app role: an ordinary append passes; a record that
    # does not name its predecessor's hash (a fork, a gap, a wrong link) is the chain's
    # tripwire: unique_violation on audit_records, which Even answers with a 503.
    engine = make_engine(migrated.app_url)
    try:
        with engine.begin() as conn:
            take_writer_lock(conn)
            record = audit_store.append(conn, AuditEvent(type="test.link"), datetime.now(UTC))
        seq, digest = record["seq"], record["hash"]
        forged = {
            "fork": (seq + 1, record["prev_hash"]),
            "gap": (seq + 2, digest),
            "wrong link": (seq + 1, "f" * 64),
        }
        for name, (position, prev_hash) in forged.items():
            _sealed, row = audit_store.sealed_row(
                AuditEvent(type="test.forged"), datetime.now(UTC), seq=position, prev_hash=prev_hash
            )
            with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
                conn.execute(audit_store.INSERT_RECORD, row)
            assert getattr(caught.value.orig, "sqlstate", None) == "23505", name
            assert is_store_unavailable(caught.value), name  # the tripwire: 503, not 500
    finally:
        engine.dispose()
