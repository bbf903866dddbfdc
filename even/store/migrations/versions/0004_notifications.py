"""The notification outbox (webhooks written with the audit record they report).

Revision ID: 0004
Revises: 0003

Frozen history: plain DDL, not the model. Rows are updated as deliveries progress (the
outbox is not part of the append-only audit log); the app role may SELECT, INSERT and UPDATE
it (even.store.schema.APP_GRANTS).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE = "notification_outbox"


def upgrade() -> None:
    bigint = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        TABLE,
        sa.Column("id", bigint, primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.String(64), nullable=False, unique=True),
        sa.Column("subscription", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("audit_seq", bigint, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.String(32), nullable=False),
        sa.Column("last_error", sa.String(255)),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("delivered_at", sa.String(32)),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notification_outbox_due", TABLE, ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_notification_outbox_due", table_name=TABLE)
    op.drop_table(TABLE)
