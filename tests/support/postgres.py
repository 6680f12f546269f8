"""A real PostgreSQL for the tests: MTAI_TEST_DATABASE_URL, or the embedded server in a temp dir."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import pool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from mtai.db import embedded
from mtai.db.engine import async_url


def _psql(admin_url: str, sql: str) -> None:
    psql = embedded._bin("psql")
    subprocess.run(
        [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", admin_url, "-c", sql],
        check=True,
        capture_output=True,
    )


@contextmanager
def test_server() -> Iterator[str]:
    """Yields an admin URL of a PostgreSQL server with pgvector; stops what it started."""
    given = os.environ.get("MTAI_TEST_DATABASE_URL")
    if given:
        yield given
        return
    root = Path(tempfile.mkdtemp(prefix="mtai-test-pg-"))
    server = embedded.start(root / "pgdata", embedded.free_port())
    try:
        yield server.admin_url
    finally:
        embedded.stop(root / "pgdata")
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server; dropped afterwards."""
    name = f"mtai_test_{secrets.token_hex(4)}"
    _psql(admin_url, f"CREATE DATABASE {name}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _psql(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def first_column(url: str, sql: str) -> list[object]:
    """The first column of `sql`'s rows, on a connection of its own (e.g. to read a schema
    between two migrations)."""
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return [row[0] for row in await conn.execute(text(sql))]
    finally:
        await engine.dispose()
