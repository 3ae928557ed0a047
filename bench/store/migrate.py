"""Run the store's Alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATION_LOCK_KEY = 726_462_006  # any constant: the PostgreSQL advisory lock held while migrating


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    url = engine.url.render_as_string(hide_password=False)  # '#' in a path or password is escaped as %23
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser reads '%' as interpolation
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` inside one connection/transaction."""
    config = alembic_config(engine)
    for attempt in range(3):  # workers starting together race to create the tables; the loser retries
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":  # serialise concurrent migrations
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
            return
        except DBAPIError:
            if attempt == 2:
                raise
            time.sleep(0.5 + attempt)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema down to `revision` ("base" drops every bench table)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
