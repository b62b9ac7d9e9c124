"""Alembic migrations, one history per service, applied by ``cirrus-manage <service> db-sync``.

Each service keeps its scripts in ``control/<service>/migrations``; its ``env.py`` is two lines that
call :func:`run_env` with the service's metadata.
"""

from __future__ import annotations

from importlib import resources

from alembic import command, context
from alembic.config import Config as AlembicConfig
from sqlalchemy import MetaData, create_engine, pool


def alembic_config(service: str, url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    location = resources.files(f"control.{service}") / "migrations"
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(service: str, url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, url), revision)


def current_revision(service: str, url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's ``migrations/env.py`` (online mode only)."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
