"""Alembic environment: the engine comes from ``migrate.alembic_config``, never from a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

from energyops_ext.db import models  # noqa: F401  (registers every table on Base.metadata)
from energyops_ext.db.base import Base

# A fixed key: several servers sharing one PostgreSQL migrate one at a time.
PG_MIGRATION_LOCK = 0x454E4F50


def run_migrations_online() -> None:
    engine: Engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATION_LOCK})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATION_LOCK})
                connection.commit()


run_migrations_online()
