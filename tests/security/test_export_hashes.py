"""Finding 5: a tenant export carried the Argon2 hashes of its members' global identities,
platform administrators and members of other tenants included; an import made them usable.

Now no archive carries a password hash, and every imported member activates again: a new
identity through the invitation the import prints, an existing one by logging in and accepting.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import tarfile
from pathlib import Path

import httpx

from mtai.config import Settings
from mtai.db.repositories import memberships as memberships_repo
from mtai.db.repositories import users as users_repo
from mtai.runtime import Runtime
from mtai.services import passwords
from tests.conftest import TenantFixture, run_mtai

TOKEN = re.compile(r"invitation for (\S+) \((\w+)\).*token (inv_[\w-]+)")


def archive_bytes(path: Path) -> bytes:
    with tarfile.open(path) as tar:
        return b"".join(
            handle.read()
            for m in tar.getmembers()
            if m.isfile() and (handle := tar.extractfile(m)) is not None
        )


async def mtai(settings: Settings, *args: str, **env: str) -> tuple[int, str]:
    done = await asyncio.to_thread(run_mtai, settings, "tenant", *args, **env)
    return done.returncode, done.stdout + done.stderr


async def login(
    client: httpx.AsyncClient, email: str, password: str, tenant: str | None = None
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        headers={"X-Tenant-ID": tenant} if tenant else {},
    )


async def test_an_export_carries_no_password_hash(
    runtime: Runtime,
    settings: Settings,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    tmp_path: Path,
) -> None:
    """A's export, where one member is also in B and another is a platform administrator."""
    root_email = f"root-{secrets.token_hex(4)}@platform.example"
    async with runtime.db.platform() as session:
        root = await users_repo.create(
            session,
            email=root_email,
            password_hash=await passwords.hash_password(secrets.token_urlsafe(16)),
            is_platform_admin=True,
        )
        await memberships_repo.add(session, tenant_id=tenant_a.id, user_id=root.id, role="admin")
        await memberships_repo.add(
            session, tenant_id=tenant_b.id, user_id=tenant_a.member_id, role="member"
        )

    code, out = await mtai(settings, "export", tenant_a.slug, str(tmp_path / "a"))
    assert code == 0, out
    everything = archive_bytes(tmp_path / "a")
    assert root_email.encode() in everything  # the members are there...
    assert b"$argon2" not in everything  # ...their hashes are not
    assert b"password_hash" not in everything
    assert b"is_platform_admin" not in everything


async def test_an_imported_identity_cannot_log_in_until_it_activates(
    settings: Settings,
    target: Settings,
    target_client: httpx.AsyncClient,
    tenant_a: TenantFixture,
    tmp_path: Path,
) -> None:
    code, out = await mtai(settings, "export", tenant_a.slug, str(tmp_path / "a"))
    assert code == 0, out
    storage = {"MTAI_STORAGE_DIR": str(target.data_dir / "objects")}
    code, out = await mtai(target, "import", str(tmp_path / "a"), **storage)
    assert code == 0, out

    # The password that worked on the source proves nothing here.
    refused = await login(target_client, tenant_a.owner_email, tenant_a.owner_password)
    assert refused.status_code == 401, refused.text

    tokens = {email: (role, token) for email, role, token in TOKEN.findall(out)}
    assert tokens[tenant_a.owner_email][0] == "owner"
    new_password = secrets.token_urlsafe(16)
    accepted = await target_client.post(
        "/api/v1/invitations/accept",
        json={"token": tokens[tenant_a.owner_email][1], "password": new_password},
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["user"]["tenant"]["role"] == "owner"
    owner = await login(target_client, tenant_a.owner_email, new_password, tenant_a.slug)
    assert owner.status_code == 200, owner.text
    # The other member has not activated: still nothing.
    member_email = next(e for e in tokens if e != tenant_a.owner_email)
    assert (await login(target_client, member_email, tenant_a.owner_password)).status_code == 401


async def test_an_existing_identity_is_invited_never_attached(
    client: httpx.AsyncClient,
    settings: Settings,
    tenant_a: TenantFixture,
    tmp_path: Path,
) -> None:
    """Restoring A in place: its owner still exists here, and must accept to be a member."""
    code, out = await mtai(settings, "export", tenant_a.slug, str(tmp_path / "a"))
    assert code == 0, out
    code, out = await mtai(settings, "delete", tenant_a.slug, "--yes")
    assert code == 0, out
    code, out = await mtai(settings, "import", str(tmp_path / "a"))
    assert code == 0, out

    before = await login(client, tenant_a.owner_email, tenant_a.owner_password, tenant_a.slug)
    assert before.status_code in (401, 403, 404), before.text

    tokens = {email: (role, token) for email, role, token in TOKEN.findall(out)}
    elsewhere = await login(client, tenant_a.owner_email, tenant_a.owner_password)
    assert elsewhere.status_code == 200, elsewhere.text
    accepted = await client.post(
        "/api/v1/invitations/accept",
        json={"token": tokens[tenant_a.owner_email][1]},
        headers={"Authorization": f"Bearer {elsewhere.json()['access_token']}"},
    )
    assert accepted.status_code == 200, accepted.text
    after = await login(client, tenant_a.owner_email, tenant_a.owner_password, tenant_a.slug)
    assert after.status_code == 200, after.text
