"""Shared fixtures: one real PostgreSQL per run, one migrated database, one app."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mtai.app import create_app
from mtai.config import Settings
from mtai.db.migrate import upgrade
from mtai.runtime import Runtime
from mtai.services.catalog import ModelDefinition, ModelSpec
from mtai.services.principal import operator
from tests.support.fake_upstreams import FakeUpstream
from tests.support.postgres import fresh_database, test_server
from tests.support.redis_server import running_tls_redis, shared_redis_url
from tests.support.s3_server import S3Server, running_s3

# The data dirs make_settings created (stores, spools, generated secrets): removed when the
# run ends, once every server that used them has stopped.
_DATA_DIRS: list[Path] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for path in _DATA_DIRS:
        shutil.rmtree(path, ignore_errors=True)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    data_dir = Path(tempfile.mkdtemp(prefix="mtai-test-data-"))
    _DATA_DIRS.append(data_dir)
    values: dict[str, Any] = {
        "env": "production",
        "database_url": database_url,
        "jwt_secret": secrets.token_urlsafe(48),
        "key_pepper": secrets.token_urlsafe(48),
        "encryption_key": secrets.token_urlsafe(48),
        "db_pool_size": 5,
        "data_dir": data_dir,
        "usage_flush_seconds": 0.1,
        # The whole suite logs in from one address; the per-email limit is what tests check.
        "login_attempts_per_ip": 1_000_000,
        "last_used_flush_seconds": 0.2,
        # Production without a metrics token refuses to start; the suite reads /metrics openly.
        "metrics_public": True,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    with test_server() as url:
        yield url


@pytest.fixture(scope="session")
async def database_url(pg_admin_url: str) -> AsyncIterator[str]:
    with fresh_database(pg_admin_url) as url:
        await upgrade(url, "mtai_app")
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def runtime(app: FastAPI) -> Runtime:
    rt: Runtime = app.state.runtime
    return rt


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def target(pg_admin_url: str, settings: Settings) -> AsyncIterator[Settings]:
    """A second deployment: its own database and object store, the same secrets (so an
    archive's signature verifies), for moving a tenant between deployments."""
    with fresh_database(pg_admin_url) as url:
        await upgrade(url, "mtai_app")
        assert settings.jwt_secret is not None
        assert settings.key_pepper is not None
        assert settings.encryption_key is not None
        yield make_settings(
            url,
            jwt_secret=settings.jwt_secret.get_secret_value(),
            key_pepper=settings.key_pepper.get_secret_value(),
            encryption_key=settings.encryption_key.get_secret_value(),
        )


@pytest.fixture
async def target_client(target: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application: FastAPI = create_app(target)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://target") as c:
            yield c


@dataclass
class TenantFixture:
    """A tenant with an owner (logged in), a member, and an API key with every scope."""

    id: uuid.UUID
    slug: str
    owner_email: str
    owner_password: str
    owner_token: str
    member_id: uuid.UUID
    member_token: str
    key_id: uuid.UUID
    key: str
    member_email: str = ""
    member_password: str = ""

    @property
    def owner(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.owner_token}"}

    @property
    def member(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.member_token}"}

    @property
    def api_key(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


async def login(client: httpx.AsyncClient, email: str, password: str, **headers: str) -> str:
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers=headers
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def invite(
    client: httpx.AsyncClient, headers: dict[str, str], email: str, role: str = "member"
) -> dict[str, Any]:
    """A tenant admin invites `email`; the answer (with the one-time token) as JSON."""
    response = await client.post(
        "/api/v1/invitations", json={"email": email, "role": role}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def accept_invitation(
    client: httpx.AsyncClient, token: str, password: str, **headers: str
) -> str:
    """The invited person accepts, as a new identity choosing `password`; their access token."""
    response = await client.post(
        "/api/v1/invitations/accept", json={"token": token, "password": password}, headers=headers
    )
    assert response.status_code == 200, response.text
    access: str = response.json()["access_token"]
    return access


async def join(
    client: httpx.AsyncClient,
    inviter: dict[str, str],
    email: str,
    password: str,
    role: str = "member",
) -> str:
    """An existing identity is invited, logs in, and accepts; its token in the new tenant."""
    invited = await invite(client, inviter, email, role)
    token = await login(client, email, password)
    response = await client.post(
        "/api/v1/invitations/accept",
        json={"token": invited["token"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    access: str = response.json()["access_token"]
    return access


async def make_tenant(client: httpx.AsyncClient, runtime: Runtime) -> TenantFixture:
    """A tenant made as in production: the owner and the member accept invitations."""
    slug = f"t-{secrets.token_hex(4)}"
    owner_email, password = f"owner@{slug}.example", secrets.token_urlsafe(16)
    tenant, owner_invitation = await runtime.tenants.create(
        operator(), slug=slug, name=slug.upper(), owner_email=owner_email
    )
    assert owner_invitation is not None
    await accept_invitation(client, owner_invitation.token, password)
    owner_token = await login(client, owner_email, password)
    owner = {"Authorization": f"Bearer {owner_token}"}
    member_email, member_password = f"member@{slug}.example", secrets.token_urlsafe(16)
    invited = await invite(client, owner, member_email, "member")
    member_token = await accept_invitation(client, invited["token"], member_password)
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {member_token}"})
    key = await client.post(
        "/api/v1/keys",
        json={"name": "ci", "scopes": ["chat", "rag:read", "rag:write", "admin"]},
        headers=owner,
    )
    assert key.status_code == 201, key.text
    return TenantFixture(
        id=tenant.id,
        slug=slug,
        owner_email=owner_email,
        owner_password=password,
        owner_token=owner_token,
        member_id=uuid.UUID(me.json()["user_id"]),
        member_token=member_token,
        key_id=uuid.UUID(key.json()["id"]),
        key=key.json()["key"],
        member_email=member_email,
        member_password=member_password,
    )


@pytest.fixture
async def tenant_a(client: httpx.AsyncClient, runtime: Runtime) -> TenantFixture:
    return await make_tenant(client, runtime)


@pytest.fixture
async def tenant_b(client: httpx.AsyncClient, runtime: Runtime) -> TenantFixture:
    return await make_tenant(client, runtime)


@dataclass
class AdminFixture:
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
async def platform_admin(client: httpx.AsyncClient, runtime: Runtime) -> AdminFixture:
    email, password = f"root-{secrets.token_hex(4)}@platform.example", secrets.token_urlsafe(16)
    activation = await runtime.invitations.issue_platform_activation(email)
    await accept_invitation(client, activation.token, password)
    return AdminFixture(email, password, await login(client, email, password))


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    """OpenAI-compatible, Anthropic and Bedrock protocols on one loopback server."""
    with FakeUpstream() as fake:
        yield fake


async def add_model(
    runtime: Runtime, fake: FakeUpstream, provider: str, **overrides: Any
) -> ModelSpec:
    """A catalog model pointing at the fake upstream, with a name unique to the test."""
    name = overrides.pop("name", f"{provider}-{secrets.token_hex(3)}")
    base = {"openai": f"{fake.base_url}/v1", "anthropic": fake.base_url, "bedrock": fake.base_url}
    values: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "upstream_model": f"up-{name}",
        "base_url": base.get(provider),
        "region": "us-east-1" if provider == "bedrock" else None,
        "api_key": "AKIDEXAMPLE:secret" if provider == "bedrock" else "platform-key",
        "context_window": 8192,
        "max_output_tokens": 1024,
        "input_price_per_1m": Decimal("3.000000"),
        "output_price_per_1m": Decimal("15.000000"),
        "timeout_seconds": 5.0,
        "max_retries": 2,
        **overrides,
    }
    return await runtime.catalog.put_model(None, ModelDefinition(**values))


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    """The app on a real loopback port (its own thread and event loop), for real HTTP clients."""
    with serving(settings) as url:
        yield url


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """An app made from `settings`, served on a loopback port until the block ends; its URL."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_config=None, timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "live server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with shared_redis_url() as url:
        yield url


@pytest.fixture(scope="session")
def tls_redis() -> Iterator[tuple[int, Path]]:
    """A TLS-only Redis (private CA: directory / "ca.crt"; ACL user mtai / s3cret-pass)."""
    with running_tls_redis() as server:
        yield server


def deployment_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a subprocess (CLI, API process) of the test deployment."""
    assert settings.jwt_secret is not None
    assert settings.key_pepper is not None
    assert settings.encryption_key is not None
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "MTAI_ENV": "production",
        "MTAI_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "MTAI_KEY_PEPPER": settings.key_pepper.get_secret_value(),
        "MTAI_ENCRYPTION_KEY": settings.encryption_key.get_secret_value(),
        "MTAI_DATA_DIR": str(settings.data_dir),
        "MTAI_LOG_LEVEL": "WARNING",
        "MTAI_METRICS_PUBLIC": "true",
        **extra,
    }


def run_mtai(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The `mtai` command as an operator runs it, against the test deployment."""
    return subprocess.run(
        [sys.executable, "-m", "mtai", *args],
        env=deployment_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) for the session, started by the first test that asks."""
    with running_s3() as server:
        yield server
