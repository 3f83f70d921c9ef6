"""Indexes for the operators' dashboard: events by kind and time (its chart of the last seven
days) and connections by platform and status (its counts, and the `/metrics` gauges).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_kind_created", "events", ["kind", "created_at"])
    op.create_index("ix_connections_provider_status", "connections", ["provider", "status"])


def downgrade() -> None:
    op.drop_index("ix_connections_provider_status", table_name="connections")
    op.drop_index("ix_events_kind_created", table_name="events")
