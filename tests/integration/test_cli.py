"""The `mtai` command against the test database, as an operator would run it."""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from mtai.config import Settings
from tests.conftest import accept_invitation
from tests.conftest import login as login_token
from tests.conftest import run_mtai as mtai
from tests.support.s3_server import S3Server, create_bucket


async def wait_status(client: httpx.AsyncClient, key: str, status: int) -> httpx.Response:
    deadline = time.monotonic() + 5
    while True:
        response = await client.get("/api/v1/auth/me", headers={"X-API-Key": key})
        if response.status_code == status or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)


async def wait_token(client: httpx.AsyncClient, token: str, status: int) -> httpx.Response:
    """The CLI's invalidation reaches this process through NOTIFY: poll briefly."""
    deadline = time.monotonic() + 5
    while True:
        response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        if response.status_code == status or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)


async def test_operator_workflow(client: httpx.AsyncClient, settings: Settings) -> None:
    assert mtai(settings, "migrate").stdout.strip() == "migrations applied"
    created = mtai(
        settings, "tenant", "create", "cli-co", "--name", "CLI Co", "--owner-email", "o@cli.example"
    )
    assert created.returncode == 0, created.stderr
    assert "initial password" not in created.stdout
    owner_token = re.search(r"token \(shown once\): (inv_\S+)", created.stdout)
    assert owner_token is not None
    assert f"/ui/accept#token={owner_token.group(1)}" in created.stdout
    await accept_invitation(client, owner_token.group(1), "owner-chose-this")
    login = await client.post(
        "/api/v1/auth/login", json={"email": "o@cli.example", "password": "owner-chose-this"}
    )
    assert login.status_code == 200
    assert "cli-co" in mtai(settings, "tenant", "list").stdout

    user = mtai(
        settings, "user", "create", "u@cli.example", "--tenant", "cli-co", "--role", "admin"
    )
    assert user.returncode == 0, user.stderr
    user_token = re.search(r"token \(shown once\): (inv_\S+)", user.stdout)
    assert user_token is not None
    assert "as admin" in user.stdout
    await accept_invitation(client, user_token.group(1), "user-chose-this")

    # Disable ends the sessions and refuses logins; enable lets the person in again.
    session = await login_token(client, "u@cli.example", "user-chose-this")
    disabled = mtai(settings, "user", "disable", "u@cli.example")
    assert disabled.returncode == 0, disabled.stderr
    assert (await wait_token(client, session, 401)).status_code == 401
    assert mtai(settings, "user", "enable", "u@cli.example").returncode == 0
    await login_token(client, "u@cli.example", "user-chose-this")

    # A platform admin: an activation for a new identity, a flag for an existing one.
    made_admin = mtai(settings, "user", "create", "ops@cli.example", "--platform-admin")
    assert made_admin.returncode == 0, made_admin.stderr
    activation = re.search(r"token \(shown once\): (inv_\S+)", made_admin.stdout)
    assert activation is not None
    admin_token = await accept_invitation(client, activation.group(1), "ops-chose-this")
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {admin_token}"})
    assert me.json()["is_platform_admin"] is True
    existing = mtai(settings, "user", "create", "u@cli.example", "--platform-admin")
    assert "is a platform administrator" in existing.stdout

    made = mtai(settings, "key", "create", "--tenant", "cli-co", "--scope", "chat", "--name", "ops")
    assert made.returncode == 0, made.stderr
    key_id = re.search(r"key ([0-9a-f-]{36})", made.stdout)
    assert key_id is not None
    key = made.stdout.strip().splitlines()[-1]
    me = await client.get("/api/v1/auth/me", headers={"X-API-Key": key})
    assert me.json()["scopes"] == ["chat"]

    revoked = mtai(settings, "key", "revoke", key_id.group(1), "--tenant", "cli-co")
    assert revoked.returncode == 0, revoked.stderr
    assert (await wait_status(client, key, 401)).status_code == 401

    second = mtai(settings, "key", "create", "--tenant", "cli-co").stdout.strip().splitlines()[-1]
    assert (await client.get("/api/v1/auth/me", headers={"X-API-Key": second})).status_code == 200
    assert mtai(settings, "tenant", "suspend", "cli-co").returncode == 0
    assert (await wait_status(client, second, 403)).json()["code"] == "tenant_suspended"
    assert mtai(settings, "tenant", "reactivate", "cli-co").returncode == 0
    assert (await wait_status(client, second, 200)).status_code == 200


def test_cli_errors_are_one_line_with_exit_1(settings: Settings) -> None:
    missing = mtai(settings, "tenant", "suspend", "no-such-tenant")
    assert missing.returncode == 1
    assert "No tenant with id or slug 'no-such-tenant'" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_slug = mtai(settings, "tenant", "create", "Bad Slug!")
    assert bad_slug.returncode == 1
    assert "slug" in bad_slug.stderr
    no_target = mtai(settings, "user", "create", "x@y.example")
    assert no_target.returncode == 1


def test_doctor_passes_on_a_good_setup(settings: Settings) -> None:
    result = mtai(settings, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    names = ("config", "MTAI_JWT_SECRET", "database", "pgvector", "migrations", "app role")
    for name in (*names, "storage"):
        assert f"] {name}:" in result.stdout


def test_doctor_names_each_failure_and_its_fix(settings: Settings) -> None:
    weak = mtai(settings, "doctor", MTAI_JWT_SECRET="changeme")
    assert weak.returncode == 1
    assert "[FAIL] MTAI_JWT_SECRET" in weak.stdout
    assert "fix:" in weak.stdout
    assert "changeme" not in weak.stdout
    refused = mtai(settings, "doctor", DATABASE_URL="postgresql://postgres@127.0.0.1:1/mtai")
    assert refused.returncode == 1
    assert "[FAIL] database: cannot connect to 127.0.0.1:1/mtai" in refused.stdout
    assert "security groups" in refused.stdout
    no_vector = mtai(
        settings, "doctor", DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres"
    )
    assert no_vector.returncode == 1
    assert "[FAIL] pgvector" in no_vector.stdout
    no_db = mtai(settings, "doctor", DATABASE_URL="postgresql://postgres@127.0.0.1:5432/mtai_nope")
    assert no_db.returncode == 1
    assert "does not exist" in no_db.stdout


def test_serve_refuses_default_secrets_in_production(settings: Settings) -> None:
    refused = mtai(settings, "serve", "--port", "1", MTAI_JWT_SECRET="changeme", MTAI_KEY_PEPPER="")
    assert refused.returncode == 1
    assert "Refusing to start in production" in refused.stderr
    assert "MTAI_JWT_SECRET is empty or a well-known default" in refused.stderr
    assert "MTAI_KEY_PEPPER" in refused.stderr


def test_doctor_names_a_missing_bucket_on_a_real_s3_server(
    settings: Settings, s3_server: S3Server
) -> None:
    s3 = {
        "MTAI_STORAGE_BACKEND": "s3",
        "MTAI_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "MTAI_S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "MTAI_S3_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "MTAI_S3_REGION": s3_server.region,
    }
    missing = mtai(settings, "doctor", MTAI_S3_BUCKET="no-such-bucket-here", **s3)
    assert missing.returncode == 1
    assert "[FAIL] storage:" in missing.stdout
    assert "no-such-bucket-here" in missing.stdout
    assert "create the bucket" in missing.stdout
    assert s3_server.secret_access_key not in missing.stdout + missing.stderr
    present = mtai(settings, "doctor", MTAI_S3_BUCKET=create_bucket(s3_server), **s3)
    assert "] storage: s3: write, read and delete work" in present.stdout, present.stdout


def test_production_without_database_url_refuses_instead_of_embedding(settings: Settings) -> None:
    result = mtai(settings, "tenant", "list", DATABASE_URL="")
    assert result.returncode == 1
    assert "DATABASE_URL is not set" in result.stderr
    assert "MTAI_ENV=development only" in result.stderr
    assert "Traceback" not in result.stderr
