"""Schema checks and Alembic upgrades, run as the schema owner."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from mtai.db.engine import async_url
from mtai.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

PGVECTOR_MISSING = (
    "PostgreSQL at {where} has no pgvector extension available. Install it on that server "
    "(Debian/Ubuntu: apt install postgresql-<major>-pgvector; Amazon RDS: PostgreSQL 15.2+ "
    "ships it), or unset DATABASE_URL to use the embedded PostgreSQL that includes pgvector."
)
OLD_POSTGRES = "PostgreSQL at {where} is version {version}; mtai needs PostgreSQL 15 or newer."


def alembic_config(url: str, app_role: str) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = async_url(url)
    cfg.attributes["app_role"] = app_role
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def describe(url: str) -> str:
    """host:port/db without credentials, for messages."""
    from sqlalchemy.engine import make_url

    parsed = make_url(async_url(url))
    host = parsed.host or parsed.query.get("host") or "localhost"
    return f"{host}:{parsed.port or 5432}/{parsed.database}"


async def check_server(url: str) -> None:
    """Refuse early, with the fix, when the server cannot hold mtai's schema."""
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            version = int((await conn.execute(text("SHOW server_version_num"))).scalar_one())
            available = (
                await conn.execute(
                    text("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    if version < 150000:
        raise ConfigurationError(OLD_POSTGRES.format(where=describe(url), version=version))
    if not available:
        raise ConfigurationError(PGVECTOR_MISSING.format(where=describe(url)))


async def current_revision(url: str) -> str | None:
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            exists = (
                await conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            ).scalar_one()
            if not exists:
                return None
            value = (
                await conn.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar_one_or_none()
            return str(value) if value is not None else None
    finally:
        await engine.dispose()


async def upgrade(url: str, app_role: str) -> None:
    await check_server(url)
    # Alembic's env.py runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(url, app_role), "head")
