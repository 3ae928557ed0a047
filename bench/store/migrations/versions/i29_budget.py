"""runs: optimizer steps and training images of each run, so the report can say which pairs are compute-matched
(issue 29).

Revision ID: i29_budget
Revises: i14_artifacts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i29_budget"
down_revision = "i14_artifacts"
branch_labels = None
depends_on = None

COLUMNS = ("train_steps", "images_seen")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
