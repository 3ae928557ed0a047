"""runs: the threads a run trained with, and each latency's spread and machine load; a head's teacher pass (issue 28).

Revision ID: i28_threads_cost_noise
Revises: i29_budget
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i28_threads_cost_noise"
down_revision = "i29_budget"
branch_labels = None
depends_on = None

FLOAT_COLUMNS = ("latency_spread", "cost_load", "teacher_latency_spread", "teacher_cost_load", "backbone_latency_ms")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("threads", sa.Integer(), nullable=True))
        for name in FLOAT_COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in (*FLOAT_COLUMNS, "threads"):
            batch.drop_column(name)
