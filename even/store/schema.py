"""The schema's only DDL path (alembic migrations) and the readiness check against it.

- `upgrade(engine)` runs `alembic upgrade head` in one transaction (PostgreSQL has
  transactional DDL: all or nothing), configured in code: the migrations ship inside the
  package and no alembic.ini is read. `even db upgrade` calls it with the owner role's URL.
- `serve` never calls it: `/readyz` compares `current_revision()` with `head_revision()` and
  stays 503 while the database is behind (or ahead, e.g. during a rollback of Even).
- `grant_app_role()` gives the app role what it needs and nothing more: INSERT and SELECT
  on the audit tables (never UPDATE, DELETE or TRUNCATE). See docs/postgresql.md.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

from audit import store as audit_store
from even.store import approval_tables as _approval_tables  # noqa: F401  (registers them too)
from even.store import console_sessions as _console  # noqa: F401  (registers its tables)
from even.store import outbox_tables as _outbox  # noqa: F401  (registers the outbox table)
from even.store import tables as _tables  # noqa: F401  (registers the SQLModel tables)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"

# Per table, what the app role may do (PostgreSQL). Audit tables: append and read only; the
# rest as the use cases need it. Every table must be listed (a test checks), so a new table
# is a decision, not an accident.
APP_GRANTS: dict[str, str] = {
    "audit_records": "SELECT, INSERT",
    "audit_checkpoints": "SELECT, INSERT",
    "access_requests": "SELECT, INSERT, UPDATE",
    "certificate_serials": "SELECT, INSERT",
    "idempotency_keys": "SELECT, INSERT, UPDATE, DELETE",
    "ca_keys": "SELECT, INSERT, UPDATE",
    "user_keys": "SELECT, INSERT, UPDATE, DELETE",
    # An approval, once given, is never changed or withdrawn (deny instead); states move on.
    "approvals": "SELECT, INSERT",
    "approval_states": "SELECT, INSERT, UPDATE",
    # Deliveries progress (attempts, status); rows are kept as the delivery history.
    "notification_outbox": "SELECT, INSERT, UPDATE",
    # Console sign-ins and sessions: created, read, deleted (sign-out, expiry); never updated.
    "console_sessions": "SELECT, INSERT, DELETE",
    "console_logins": "SELECT, INSERT, DELETE",
    "krl_state": "SELECT, UPDATE",  # the revocation counter (one row, made by the migration)
    VERSION_TABLE: "SELECT",  # /readyz compares the revision
}
# Sequences behind autoincrementing keys: the app draws serials (nextval needs USAGE).
APP_SEQUENCES = (("certificate_serials", "serial"), ("notification_outbox", "id"))
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def target_metadata() -> list[MetaData]:
    """The models' metadata, which the migrated schema must match (autogenerate, tests)."""
    return [SQLModel.metadata, audit_store.metadata]


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision this build of Even ships (read once per process)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no alembic revisions under {MIGRATIONS_DIR}")
    return head


def upgrade(engine: Engine, *, app_role: str | None = None) -> str:
    """Migrate the database to the head revision (and grant `app_role`); returns the head."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
        if app_role is not None:
            grant_app_role(conn, app_role)
    return head_revision()


def current_revision(conn: Connection) -> str | None:
    """The database's revision, or None when it has none (never migrated) or can't say."""
    try:
        row = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()  # noqa: S608
    except DBAPIError:
        return None
    return None if row is None else str(row[0])


def grant_app_role(conn: Connection, role: str) -> None:
    """Set the app role's privileges to exactly APP_GRANTS (PostgreSQL; no-op on SQLite).

    Revoke-then-grant, so running it again after a change of the table converges.
    """
    if conn.dialect.name != "postgresql":
        return
    if not _ROLE_NAME.fullmatch(role):
        raise ValueError(f"not a plain role name: {role!r}")
    quote = conn.dialect.identifier_preparer.quote
    database = quote(str(conn.execute(text("SELECT current_database()")).scalar_one()))
    conn.execute(text(f"GRANT CONNECT ON DATABASE {database} TO {role}"))
    conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
    for table, privileges in APP_GRANTS.items():
        conn.execute(text(f"REVOKE ALL ON TABLE {quote(table)} FROM {role}"))
        conn.execute(text(f"GRANT {privileges} ON TABLE {quote(table)} TO {role}"))
    for table, column in APP_SEQUENCES:
        sequence = conn.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": table, "column": column},
        ).scalar_one()
        conn.execute(text(f"GRANT USAGE ON SEQUENCE {sequence} TO {role}"))
