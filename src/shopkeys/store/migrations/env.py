"""Alembic environment: shopkeys hands it a live connection (see store.database)."""

from __future__ import annotations

from alembic import context

from shopkeys.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run shopkeys migrations with `shopkeys db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
