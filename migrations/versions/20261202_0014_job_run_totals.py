"""job_run_totals: the schedulers' job runs per job, which every web process's /metrics reads

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 17:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_run_totals",
        sa.Column("job", sa.String(length=60), nullable=False),
        sa.Column("runs_ok", sa.Integer(), nullable=False),
        sa.Column("runs_failed", sa.Integer(), nullable=False),
        sa.Column("seconds_total", sa.Float(), nullable=False, comment="wall time of every run, summed"),
        sa.Column("last_started_at", sa.DateTime(), nullable=False),
        sa.Column("last_outcome", sa.String(length=10), nullable=False, comment="ok or failed"),
        sa.Column("last_seconds", sa.Float(), nullable=False, comment="wall time of the last run"),
        sa.Column(
            "last_success_at",
            sa.DateTime(),
            nullable=True,
            comment="when the last run that succeeded finished",
        ),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_run_totals")),
    )


def downgrade() -> None:
    op.drop_table("job_run_totals")
