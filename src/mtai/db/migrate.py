"""Schema checks, Alembic upgrades and the app's login roles, run as the schema owner."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import pool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from mtai.db.engine import async_url
from mtai.db.rls import ident, platform_role
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


# --- Login roles -----------------------------------------------------------------------------

SCRAM_ITERATIONS = 4096


def scram_verifier(password: str) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of `password`, made here so the password itself is
    never sent in a statement (statement logs would keep it)."""
    if not password.isascii() or not password.isprintable():
        raise ConfigurationError(
            "A database login's password must be printable ASCII (letters, digits and "
            "punctuation; percent-encode it in the URL): change it in the URL and run again."
        )
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def _login_of(url: str, setting: str) -> tuple[str, str]:
    parsed = make_url(async_url(url))
    if not parsed.username or not parsed.password:
        raise ConfigurationError(
            f"{setting} must name a user and a password (postgresql://user:password@host/db) "
            "for `mtai migrate --create-logins` to create that login."
        )
    return ident(parsed.username), parsed.password


async def ensure_logins(
    migration_url: str, app_role: str, *, tenant_url: str, platform_url: str
) -> tuple[str, str]:
    """Create (or update the password of) the two logins the app uses, as the schema owner.

    DATABASE_URL's login becomes a member of the app role only, MTAI_PLATFORM_DATABASE_URL's
    a member of the platform role only; both NOINHERIT (without SET ROLE they hold nothing)
    and without any other attribute. Re-running with new passwords in the URLs rotates them.
    Run after the migrations, which create the two roles. Returns the two login names.
    """
    owner = make_url(async_url(migration_url)).username
    tenant_login, tenant_password = _login_of(tenant_url, "DATABASE_URL")
    platform_login, platform_password = _login_of(platform_url, "MTAI_PLATFORM_DATABASE_URL")
    app, platform = ident(app_role), platform_role(app_role)
    names = {tenant_login, platform_login}
    if len(names) != 2 or owner in names or names & {app, platform}:
        raise ConfigurationError(
            "DATABASE_URL and MTAI_PLATFORM_DATABASE_URL must log in as two different users, "
            f"neither of them the migrating owner ({owner}) nor the roles {app} and {platform}; "
            "MTAI_DATABASE_MIGRATION_URL is the owner's connection."
        )
    engine = create_async_engine(async_url(migration_url), poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            for login, password, member_of, not_member_of in (
                (tenant_login, tenant_password, app, platform),
                (platform_login, platform_password, platform, app),
            ):
                await _ensure_login(conn, login, password, member_of, not_member_of)
    finally:
        await engine.dispose()
    return tenant_login, platform_login


async def _ensure_login(
    conn: AsyncConnection, login: str, password: str, member_of: str, not_member_of: str
) -> None:
    existing = (
        await conn.execute(
            text(
                "SELECT rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb "
                "OR rolreplication FROM pg_roles WHERE rolname = :name"
            ),
            {"name": login},
        )
    ).scalar_one_or_none()
    if existing:
        raise ConfigurationError(
            f"The login '{login}' exists with SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB or "
            "REPLICATION: name a login of its own for mtai in the URL."
        )
    verb = "CREATE" if existing is None else "ALTER"
    # A verifier, not the password: quoted as a literal by format(%L) on the server.
    statement = (
        await conn.execute(
            text(
                f"SELECT format('{verb} ROLE %I LOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS "
                "NOCREATEDB NOCREATEROLE PASSWORD %L', CAST(:login AS text), "
                "CAST(:verifier AS text))"
            ),
            {"login": login, "verifier": scram_verifier(password)},
        )
    ).scalar_one()
    # As the server quoted it: no bind parameters (the verifier holds ':').
    await conn.exec_driver_sql(str(statement))
    await conn.execute(text(f"GRANT {member_of} TO {login}"))
    # A login moved from one URL to the other keeps no membership of its old role.
    await conn.execute(text(f"REVOKE {not_member_of} FROM {login}"))
