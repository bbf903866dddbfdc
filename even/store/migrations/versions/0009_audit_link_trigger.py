"""Audit records: a link trigger instead of the UNIQUE(prev_hash) index.

Revision ID: 0009
Revises: 0008

`UNIQUE(prev_hash)` refused a fork (two records naming one predecessor), but a hash is
random, so every appended record wrote a leaf of that index at a random place: on a log of
~70,000 records it cost ~17 µs of every record on SQLite (index pages out of the cache, and
each one another page to write at commit). The trigger that replaces it checks more, from a
page the append touches anyway: a new record's `prev_hash` must be the `hash` of record
`seq - 1` (64 zeros for seq 1). So a fork fails as before (the second successor does not
link to the record before it), and so do a gap in `seq` and a record that links to the
wrong hash. `seq` stays the primary key; the append-only triggers are unchanged.

PostgreSQL: a plpgsql row trigger, `ENABLE ALWAYS` like the append-only ones; it raises
`unique_violation` naming the table, which Even already treats as the chain's tripwire
(503, nothing committed, logged). SQLite cannot drop a table constraint: the table is
rebuilt as 0008 did, with the same columns, keys, index and triggers, rows copied first.
Frozen history: plain DDL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLE = "audit_records"
COLUMNS = "seq, time, type, username, login, hostname, request_id, reason, details, prev_hash, hash"
_SQLITE_TABLE = """CREATE TABLE {name} (
    seq INTEGER NOT NULL,
    time VARCHAR(32) NOT NULL,
    type VARCHAR(64) NOT NULL,
    username VARCHAR(64),
    login VARCHAR(64),
    hostname VARCHAR(253),
    request_id VARCHAR(64),
    reason TEXT,
    details TEXT NOT NULL,
    prev_hash VARCHAR(64) NOT NULL,
    hash VARCHAR(64) NOT NULL,
    PRIMARY KEY (seq){prev_unique}
)"""
SQLITE_LINK_TRIGGER = (  # the genesis hash is 64 zeros
    "CREATE TRIGGER audit_records_link BEFORE INSERT ON audit_records "
    "WHEN NEW.seq < 1 OR NEW.prev_hash IS NOT (CASE WHEN NEW.seq = 1 THEN printf('%064d', 0) "
    "ELSE (SELECT hash FROM audit_records WHERE seq = NEW.seq - 1) END) "
    "BEGIN SELECT RAISE(ABORT, 'audit_records: a record must link to the record before it'); END"
)
POSTGRES_LINK_FUNCTION = """
CREATE OR REPLACE FUNCTION even_audit_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq < 1 OR NEW.prev_hash IS DISTINCT FROM (CASE WHEN NEW.seq = 1 THEN repeat('0', 64)
            ELSE (SELECT hash FROM audit_records WHERE seq = NEW.seq - 1) END) THEN
        RAISE EXCEPTION '%: record % does not link to the record before it', TG_TABLE_NAME,
            NEW.seq USING ERRCODE = 'unique_violation', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END
$$"""
POSTGRES_LINK_TRIGGER = (
    "CREATE TRIGGER audit_records_link BEFORE INSERT ON audit_records "
    "FOR EACH ROW EXECUTE FUNCTION even_audit_link()"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(prev_unique=False)
        op.execute(SQLITE_LINK_TRIGGER)
        return
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints(TABLE):
        if constraint["column_names"] == ["prev_hash"] and constraint["name"]:
            op.drop_constraint(constraint["name"], TABLE, type_="unique")
    op.execute(POSTGRES_LINK_FUNCTION)
    op.execute(POSTGRES_LINK_TRIGGER)
    op.execute("ALTER TABLE audit_records ENABLE ALWAYS TRIGGER audit_records_link")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(prev_unique=True)  # the link trigger goes with the old table
        return
    op.execute("DROP TRIGGER IF EXISTS audit_records_link ON audit_records")
    op.execute("DROP FUNCTION IF EXISTS even_audit_link()")
    op.create_unique_constraint("audit_records_prev_hash_key", TABLE, ["prev_hash"])


def _rebuild_sqlite(*, prev_unique: bool) -> None:
    op.execute(
        _SQLITE_TABLE.format(
            name="audit_records_rebuilt",
            prev_unique=",\n    UNIQUE (prev_hash)" if prev_unique else "",
        )
    )
    copy = f"INSERT INTO audit_records_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM audit_records"  # noqa: S608
    op.execute(copy)  # constants only
    op.execute("DROP TABLE audit_records")  # its index and triggers go with it
    op.execute("ALTER TABLE audit_records_rebuilt RENAME TO audit_records")
    op.execute("CREATE INDEX ix_audit_records_request_id ON audit_records (request_id)")
    for action in ("update", "delete"):
        op.execute(
            f"CREATE TRIGGER audit_records_no_{action} BEFORE {action.upper()} ON audit_records "
            f"BEGIN SELECT RAISE(ABORT, 'audit_records are append-only'); END"
        )
