"""Alembic environment: the engine comes from the hub (`ackhub.hub.store.db.alembic_config`) or, for the
`alembic` command line, from ACKHUB_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlmodel import SQLModel

import ackhub.hub.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from ackhub.hub.store.db import make_engine

config = context.config
engine = config.attributes.get("engine") or make_engine(
    os.environ.get("ACKHUB_DATABASE_URL", "sqlite:///ackhub.db")
)

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
