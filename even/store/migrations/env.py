"""Alembic's environment script for Even (SQLite and PostgreSQL); alembic executes it.

At run time `even.store.schema.upgrade()` hands in an open connection through
`config.attributes["connection"]`, so no alembic.ini and no URL in a file are needed. For
authoring revisions, `alembic -c even/store/migrations/alembic.ini … -x url=URL` works too.

Every upgrade runs in one transaction that first joins the writer order (the same lock every
write transaction takes), so it waits for in-flight grants, holds new ones off until the DDL has
committed, and two concurrent `even db upgrade` runs apply each revision once.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from even.store.db import make_engine, take_writer_lock
from even.store.schema import target_metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        take_writer_lock(connection)
        context.run_migrations()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database with -x url=URL")
    engine = make_engine(url, for_migrations=True)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) mode is not supported; run against a database")
_main()
