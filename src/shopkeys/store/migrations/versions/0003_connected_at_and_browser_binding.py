"""When each connection was last connected; connect sessions bound to the browser that opened them.

`connected_at` orders an end user's connections by when the merchant last connected each store
(a refresh touches `updated_at`, which is why that column cannot serve). A connect session keeps a
hash of the cookie set on the browser that opened it, and, when the callback comes back in another
browser, the encrypted grant waiting for that first browser to confirm it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE connections SET connected_at = created_at")
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.create_index(
            "ix_connections_end_user_connected", ["end_user_id", "connected_at"], unique=False
        )
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("browser_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pending", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_column("pending")
        batch_op.drop_column("browser_hash")
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_index("ix_connections_end_user_connected")
        batch_op.drop_column("connected_at")
