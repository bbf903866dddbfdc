"""Serials and chain positions up to 2^53 on PostgreSQL (SPEC §4, §8).

Revision ID: 0002
Revises: 0001

SQLite's INTEGER is already 64-bit, so only PostgreSQL changes: BIGINT for the serial
columns, the serial sequence, and the audit chain's seq/size. Frozen history: plain DDL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIGINT_COLUMNS = (
    ("access_requests", "serial"),
    ("access_requests", "bastion_serial"),
    ("certificate_serials", "serial"),
    ("audit_records", "seq"),
    ("audit_checkpoints", "size"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in BIGINT_COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())
    # A serial column's sequence is `AS integer` since PostgreSQL 10; widen it too.
    op.execute("ALTER SEQUENCE certificate_serials_serial_seq AS bigint")


def downgrade() -> None:
    raise NotImplementedError("serials issued past 2^31 cannot be narrowed back")
