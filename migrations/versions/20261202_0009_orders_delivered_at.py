"""orders.delivered_at: when the shop says the order arrived (the review-request trigger)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "delivered_at",
                sa.DateTime(),
                nullable=True,
                comment="when the order arrived, as the shop posted it; NULL = not known",
            )
        )
        batch_op.create_index("ix_orders_delivered_at", ["delivered_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_delivered_at")
        batch_op.drop_column("delivered_at")
