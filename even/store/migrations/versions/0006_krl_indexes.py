"""What `GET /v1/krl` reads cheaply (SPEC §6): a revocation counter, revocations by number,
serials by expiry.

Revision ID: 0006
Revises: 0005

`GET /v1/krl` asks, on every call, whether anything was revoked since the KRL it holds
(`krl_state.changes`, one row, bumped by every revoke, whose new value the revoke stores in
`access_requests.revocation_seq`); when something was, it reads the revocations numbered
after the ones it holds, and a cold start reads only serials not yet past `valid_before` +
10 min (`certificate_serials.valid_before`). Revocations from before this revision have no
number; a cold start reads them by status, as before.
Frozen history: plain DDL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    state = op.create_table(
        "krl_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(state, [{"id": 1, "changes": 0}])
    op.add_column("access_requests", sa.Column("revocation_seq", sa.BigInteger()))
    op.create_index("ix_access_requests_revocation_seq", "access_requests", ["revocation_seq"])
    op.create_index("ix_certificate_serials_valid_before", "certificate_serials", ["valid_before"])


def downgrade() -> None:
    op.drop_index("ix_certificate_serials_valid_before", "certificate_serials")
    op.drop_index("ix_access_requests_revocation_seq", "access_requests")
    op.drop_column("access_requests", "revocation_seq")
    op.drop_table("krl_state")
