"""runs: how many cells trained together in one stacked model (--bundle auto, issue 28); 1 for a run trained alone.

Revision ID: i28_bundle_size
Revises: i22_teacher_views
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i28_bundle_size"
down_revision = "i22_teacher_views"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("bundle_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("bundle_size")
