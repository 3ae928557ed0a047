"""Evaluation columns: top-5, image-text retrieval recalls, skipped images, split sizes.

Revision ID: i5_eval
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i5_eval"
down_revision = "0001"
branch_labels = None
depends_on = None

FLOAT_COLUMNS = ("test_top5", "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mean_recall")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in FLOAT_COLUMNS:
            batch.add_column(sa.Column(column, sa.Float(), nullable=True))
        batch.add_column(sa.Column("skipped_images", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("split_sizes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in ("split_sizes", "skipped_images", *reversed(FLOAT_COLUMNS)):
            batch.drop_column(column)
