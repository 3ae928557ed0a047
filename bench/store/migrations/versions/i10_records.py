"""run_epochs.train_acc: each epoch's running top-1 on the training batches (learning curves).

Revision ID: i10_records
Revises: i6_resume
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i10_records"
down_revision = "i6_resume"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_epochs") as batch:
        batch.add_column(sa.Column("train_acc", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_epochs") as batch:
        batch.drop_column("train_acc")
