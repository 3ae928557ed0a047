"""runs: the teacher's seconds and images on augmented views (data.teacher_views cached / online, issue 22).

Revision ID: i22_teacher_views
Revises: i28_threads_cost_noise
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i22_teacher_views"
down_revision = "i28_threads_cost_noise"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("teacher_view_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("teacher_view_images", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("teacher_view_images")
        batch.drop_column("teacher_view_s")
