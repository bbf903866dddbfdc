"""Audit records without the UNIQUE(hash) index: one b-tree less to update per record.

Revision ID: 0008
Revises: 0007

The uniqueness it enforced already follows from what stays. A record's `hash` is SHA-256 over
its canonical form, which includes its `seq` (audit.chain); `seq` is the primary key, so two
rows carry distinct seqs, and equal hashes would take a SHA-256 collision. `UNIQUE(prev_hash)`
still refuses a fork (two records naming one predecessor), the append-only triggers still
refuse UPDATE and DELETE, and nothing looks a record up by its hash (the head is read by
`seq`). The index cost ~20 µs of every appended record on SQLite.

SQLite cannot drop a table constraint: the table is rebuilt with the same columns, keys,
index and triggers (DROP TABLE fires no DELETE trigger; the rows are copied first, in the
migration's transaction). PostgreSQL drops the constraint by its reflected name.
Frozen history: plain DDL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
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
    PRIMARY KEY (seq),
    UNIQUE (prev_hash){hash_unique}
)"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(hash_unique=False)
        return
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints(TABLE):
        if constraint["column_names"] == ["hash"] and constraint["name"]:
            op.drop_constraint(constraint["name"], TABLE, type_="unique")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(hash_unique=True)
        return
    op.create_unique_constraint("audit_records_hash_key", TABLE, ["hash"])


def _rebuild_sqlite(*, hash_unique: bool) -> None:
    op.execute(
        _SQLITE_TABLE.format(
            name="audit_records_rebuilt", hash_unique=",\n    UNIQUE (hash)" if hash_unique else ""
        )
    )
    copy = f"INSERT INTO audit_records_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM {TABLE}"  # noqa: S608
    op.execute(copy)  # constants only
    op.execute(f"DROP TABLE {TABLE}")  # its index and triggers go with it
    op.execute(f"ALTER TABLE audit_records_rebuilt RENAME TO {TABLE}")
    op.execute(f"CREATE INDEX ix_audit_records_request_id ON {TABLE} (request_id)")
    for action in ("update", "delete"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{action} BEFORE {action.upper()} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{TABLE} are append-only'); END"
        )
