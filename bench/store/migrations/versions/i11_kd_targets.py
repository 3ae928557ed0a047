"""runs.kd_targets: which teacher logits KD read (probe-oof-5, probe-in-sample or zero-shot).

Revision ID: i11_kd_targets
Revises: i10_records
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i11_kd_targets"
down_revision = "i10_records"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("kd_targets", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("kd_targets")
