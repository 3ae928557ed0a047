"""runs: the trained student's artifact (path, sha256) and its inference cost beside the teacher's (issue 14).

Revision ID: i14_artifacts
Revises: i11_kd_targets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i14_artifacts"
down_revision = "i11_kd_targets"
branch_labels = None
depends_on = None

TEXT_COLUMNS = {"artifact_path": sa.Text(), "artifact_sha256": sa.String(length=64)}
FLOAT_COLUMNS = ("latency_ms", "throughput_ips", "macs", "teacher_latency_ms", "teacher_throughput_ips",
                 "teacher_macs", "speedup")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name, kind in TEXT_COLUMNS.items():
            batch.add_column(sa.Column(name, kind, nullable=True))
        for name in FLOAT_COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in (*FLOAT_COLUMNS, *TEXT_COLUMNS):
            batch.drop_column(name)
