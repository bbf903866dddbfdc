"""Baseline: every table Even has, and the audit tables' append-only guards.

Revision ID: 0001
Revises: (none)

Frozen history: this spells out its DDL rather than importing the models.

Append-only guards (SPEC §8), for the owner role too, whose privileges would allow changes:
- SQLite: BEFORE UPDATE / BEFORE DELETE triggers that abort.
- PostgreSQL: one plpgsql function that raises, used by row triggers BEFORE UPDATE and BEFORE
  DELETE and a statement trigger BEFORE TRUNCATE (TRUNCATE fires no row triggers). They are
  `ENABLE ALWAYS`, so they fire even under `session_replication_role = replica`, which is
  how one would otherwise bypass ordinary triggers. The app role additionally lacks the
  privileges (even.store.schema.APP_GRANTS).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = ("audit_records", "audit_checkpoints")
GUARD_FUNCTION = "even_refuse_audit_change"


def upgrade() -> None:
    _access_requests()
    _certificate_serials()
    _small_tables()
    _audit_tables()
    if op.get_bind().dialect.name == "postgresql":
        _postgres_guards()
    else:
        _sqlite_guards()


def _access_requests() -> None:
    op.create_table(
        "access_requests",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(253), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("rule", sa.String(64)),
        sa.Column("bastion", sa.String(64)),
        sa.Column("lifetime_minutes", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column("serial", sa.Integer()),
        sa.Column("key_id", sa.String(128)),
        sa.Column("principals", sa.String(), nullable=False),
        sa.Column("valid_after", sa.String()),
        sa.Column("valid_before", sa.String()),
        sa.Column("certificate", sa.String()),
        sa.Column("bastion_serial", sa.Integer()),
        sa.Column("bastion_certificate", sa.String()),
        sa.Column("status_reason", sa.String()),
        sa.Column("revoked_at", sa.String()),
        sa.Column("revoked_by", sa.String(64)),
        sa.Column("created", sa.String(), nullable=False),
        sa.Column("last_modified", sa.String(), nullable=False),
        sa.Column("last_modified_by", sa.String(64)),
    )
    for column in ("status", "username", "hostname", "serial"):
        op.create_index(f"ix_access_requests_{column}", "access_requests", [column])


def _certificate_serials() -> None:
    # SQLite AUTOINCREMENT never reuses a serial; PostgreSQL draws them from a sequence.
    op.create_table(
        "certificate_serials",
        sa.Column("serial", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("valid_before", sa.String(), nullable=False),
        sa.Column("ca_fingerprint", sa.String(64)),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_certificate_serials_request_id", "certificate_serials", ["request_id"])


def _small_tables() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("answer", sa.String()),
        sa.Column("created", sa.String(), nullable=False),
    )
    op.create_table(
        "ca_keys",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("public_line", sa.String(), nullable=False),
        sa.Column("key_file", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created", sa.String(), nullable=False),
        sa.Column("activated", sa.String()),
        sa.Column("retired", sa.String()),
        sa.Column("last_valid_before", sa.String()),
    )
    op.create_index("ix_ca_keys_state", "ca_keys", ["state"])
    op.create_table(
        "user_keys",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.String(), nullable=False),
        sa.Column("created", sa.String(), nullable=False),
    )


def _audit_tables() -> None:
    # seq is the chain position (PK: no duplicates); UNIQUE(prev_hash) refuses a fork.
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64)),
        sa.Column("login", sa.String(64)),
        sa.Column("hostname", sa.String(253)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("reason", sa.Text()),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index("ix_audit_records_request_id", "audit_records", ["request_id"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )


def _sqlite_guards() -> None:
    for table in APPEND_ONLY_TABLES:
        for action in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action} BEFORE {action.upper()} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} are append-only'); END"
            )


def _postgres_guards() -> None:
    op.execute(
        f"""
        CREATE FUNCTION {GUARD_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% are append-only (% refused)', TG_TABLE_NAME, TG_OP;
        END
        $$
        """
    )
    for table in APPEND_ONLY_TABLES:
        for action, level in (("update", "ROW"), ("delete", "ROW"), ("truncate", "STATEMENT")):
            name = f"{table}_no_{action}"
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {action.upper()} ON {table} "
                f"FOR EACH {level} EXECUTE FUNCTION {GUARD_FUNCTION}()"
            )
            op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")


def downgrade() -> None:
    # Dropping the audit log is not a migration step: refuse rather than destroy evidence.
    raise RuntimeError("the baseline cannot be downgraded (it would drop the audit log)")
