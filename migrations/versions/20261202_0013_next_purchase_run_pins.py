"""next_purchase_runs.is_rolled_back and is_pinned: the ranker's runs roll back and pin as the models' do

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 14:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("next_purchase_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "is_rolled_back",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
                comment="set by `model rollback --next-purchase`: never served again",
            )
        )
        batch_op.add_column(
            sa.Column(
                "is_pinned",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
                comment="set by `model rollback`/`promote`: served ahead of newer runs until `model unpin`",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("next_purchase_runs", schema=None) as batch_op:
        batch_op.drop_column("is_pinned")
        batch_op.drop_column("is_rolled_back")
