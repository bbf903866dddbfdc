"""Approvals and break-glass reviews (SPEC §11).

Revision ID: 0003
Revises: 0002

Two tables beside `access_requests` (whose status column already holds `PENDING_APPROVAL`):
`approvals`, one row per approver with (request_id, approver) as its key so an approver counts
once even when two replicas race, and `approval_states`, one row per request that needed
approval or was a break-glass grant. The app role may insert and read approvals but never change
or delete one (even.store.schema.APP_GRANTS). Frozen history: plain DDL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("approver", sa.String(64), primary_key=True),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("comment", sa.String()),
    )
    op.create_table(
        "approval_states",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("needed", sa.Integer(), nullable=False),
        sa.Column("approver_groups", sa.String(), nullable=False),
        sa.Column("pending_expires_at", sa.String(32)),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("review_due", sa.String(32)),
        sa.Column("reviewed_at", sa.String(32)),
        sa.Column("reviewed_by", sa.String(64)),
        sa.Column("verdict", sa.String(16)),
        sa.Column("review_comment", sa.String()),
        sa.Column("overdue_recorded_at", sa.String(32)),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("decision_comment", sa.String()),
    )
    # The expiry and overdue jobs look requests up by their deadlines.
    for column in ("pending_expires_at", "review_due"):
        op.create_index(f"ix_approval_states_{column}", "approval_states", [column])


def downgrade() -> None:
    op.drop_index("ix_approval_states_review_due", table_name="approval_states")
    op.drop_index("ix_approval_states_pending_expires_at", table_name="approval_states")
    op.drop_table("approval_states")
    op.drop_table("approvals")
