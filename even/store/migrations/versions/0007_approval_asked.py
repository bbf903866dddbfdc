"""What a pending request asked for, kept until its last approval grants it (SPEC §11).

Revision ID: 0007
Revises: 0006

`approval_states.asked`: a JSON object with the requester's groups, issuer and dev-issuer
flag as the token said at request time, the requested lifetime and bastion, and the public
key(s) to sign or push. The grant at the last approval re-checks the policy as it is then
against exactly these facts and certifies (or pushes) exactly this key: the requester is not
there to send it again. NULL for break-glass grants (granted at once). Frozen history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("approval_states", sa.Column("asked", sa.String()))


def downgrade() -> None:
    with op.batch_alter_table("approval_states") as batch:
        batch.drop_column("asked")
