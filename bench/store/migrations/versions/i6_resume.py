"""runs.resumed_from_epoch: how many epochs a run restored from a dead worker's checkpoint.

Revision ID: i6_resume
Revises: i5_eval
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i6_resume"
down_revision = "i5_eval"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("resumed_from_epoch", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("resumed_from_epoch")
