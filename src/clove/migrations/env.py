"""Alembic environment: runs against the URL given by clove.db_migrate (or CLOVE_DATABASE_URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from clove.config import get_settings
from clove.db import make_engine
from clove.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Clove's migrations run online only: use `clove db upgrade`.")
run_migrations_online()
