"""Schema checks and Alembic upgrades, run as the schema owner."""

from __future__ import annotations

import asyncio
import re
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
    "PostgreSQL at {where} has no pgvector extension available. Install pgvector 0.8.0 or "
    "newer on that server (Debian/Ubuntu: the postgresql-<major>-pgvector package of the "
    "PostgreSQL project's apt repository; Amazon RDS: PostgreSQL 15.9+, 16.5+ or 17.1+), or "
    "unset DATABASE_URL to use the embedded PostgreSQL that includes it."
)
# Half-precision HNSW indexes (migration 0008) need 0.7.0; iterative index scans, set on
# every connection (db/engine.py), 0.8.0.
PGVECTOR_MINIMUM = (0, 8, 0)
OLD_PGVECTOR = (
    "PostgreSQL at {where} offers pgvector {version}; mtai needs pgvector 0.8.0 or newer. "
    "Upgrade the pgvector package on that server (Amazon RDS: PostgreSQL 15.9+, 16.5+ or "
    "17.1+), then run `mtai migrate`, which updates the extension in the database."
)
OLD_POSTGRES = "PostgreSQL at {where} is version {version}; mtai needs PostgreSQL 15 or newer."
_PGVECTOR_OFFERED = text(
    "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
)


class ServerUnfit(ConfigurationError):
    """The server cannot hold mtai's schema; `fix` says what to change, in a few words."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def parse_version(text_version: str) -> tuple[int, ...]:
    """'0.8.0' -> (0, 8, 0); the numbers only, so '0.8.1-dev' or '0.9.0rc1' still compare."""
    return tuple(int(number) for number in re.findall(r"\d+", text_version.split("-")[0]))


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
            available = (await conn.execute(_PGVECTOR_OFFERED)).scalar_one_or_none()
    finally:
        await engine.dispose()
    where = describe(url)
    if version < 150000:
        raise ServerUnfit(OLD_POSTGRES.format(where=where, version=version), "upgrade PostgreSQL")
    if available is None:
        raise ServerUnfit(PGVECTOR_MISSING.format(where=where), "install pgvector on the server")
    if parse_version(available) < PGVECTOR_MINIMUM:
        raise ServerUnfit(
            OLD_PGVECTOR.format(where=where, version=available),
            "upgrade pgvector on the server to 0.8.0 or newer",
        )


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
