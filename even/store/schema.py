"""Schema creation and the version check that keeps `serve` from running on an old schema.

`even db upgrade` is the only DDL path; `serve` never creates tables and reports not ready
while the schema is behind. (Alembic migrations replace `create_all` when the PostgreSQL work
lands; the version row stays the readiness signal.)
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

from audit import store as audit_store
from even.store.tables import SchemaVersionRow

SCHEMA_VERSION = 1


def upgrade(engine: Engine) -> int:
    with engine.begin() as conn:
        SQLModel.metadata.create_all(conn)
        audit_store.metadata.create_all(conn)
        audit_store.install_append_only_guards(conn)
        row = conn.execute(select(SchemaVersionRow.__table__)).first()  # type: ignore[attr-defined]
        if row is None:
            conn.execute(SchemaVersionRow.__table__.insert().values(id=1, version=SCHEMA_VERSION))  # type: ignore[attr-defined]
    return SCHEMA_VERSION


def current_version(conn: Connection) -> int | None:
    try:
        row = conn.execute(select(SchemaVersionRow.__table__.c.version)).first()  # type: ignore[attr-defined]
    except SQLAlchemyError:
        return None
    return None if row is None else int(row[0])
