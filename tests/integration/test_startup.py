"""Refusals at startup: a server without pgvector, a role that bypasses RLS, a missing role."""

from __future__ import annotations

import os

import pytest

from mtai.config import Settings
from mtai.db.migrate import check_server, upgrade
from mtai.errors import ConfigurationError
from mtai.runtime import open_runtime
from tests.conftest import make_settings
from tests.support.postgres import _psql, fresh_database

# The machine's own PostgreSQL 15, which has no pgvector: the classic first-deploy mistake.
SYSTEM_PG = os.environ.get(
    "MTAI_TEST_PLAIN_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def test_missing_pgvector_fails_with_the_fix() -> None:
    with fresh_database(SYSTEM_PG) as url, pytest.raises(ConfigurationError) as refused:
        await upgrade(url, "mtai_app")
    message = str(refused.value)
    assert "no pgvector extension" in message
    assert "postgresql-<major>-pgvector" in message
    assert "unset DATABASE_URL" in message


async def test_server_with_pgvector_passes_the_check(database_url: str) -> None:
    await check_server(database_url)


async def test_app_role_that_bypasses_rls_is_refused(pg_admin_url: str, database_url: str) -> None:
    _psql(
        pg_admin_url,
        "DO $$ BEGIN CREATE ROLE mtai_bypass NOLOGIN BYPASSRLS; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    _psql(pg_admin_url, "GRANT mtai_bypass TO current_user")
    settings = make_settings(database_url, db_app_role="mtai_bypass")
    with pytest.raises(ConfigurationError, match="BYPASSRLS"):
        async with open_runtime(settings, background=False):
            pass


async def test_missing_app_role_says_run_migrate(database_url: str) -> None:
    settings = make_settings(database_url, db_app_role="mtai_never_created")
    with pytest.raises(ConfigurationError, match="mtai migrate"):
        async with open_runtime(settings, background=False):
            pass


async def test_unset_database_url_explains_itself() -> None:
    settings = Settings(_env_file=None, env="development", database_url=None)
    with pytest.raises(ConfigurationError, match="DATABASE_URL is not set"):
        async with open_runtime(settings):
            pass
