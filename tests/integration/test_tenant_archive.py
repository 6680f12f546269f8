"""`mtai tenant export` / `mtai tenant import`: a tenant moves to a fresh deployment (its own
database and object store) and answers the same searches the same way there."""

from __future__ import annotations

import asyncio
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import httpx

from mtai.config import Settings
from mtai.db.migrate import upgrade
from mtai.db.repositories import tenant_rows
from mtai.runtime import Runtime
from tests.conftest import TenantFixture, make_settings, run_mtai
from tests.integration.test_rag import GARDEN, LIGHTHOUSE, upload_text, wait_done
from tests.support.postgres import fresh_database

QUERIES = ("fog horn compressed air", "how long does compost take", "diaphone")


def cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_mtai(settings, "tenant", *args, **env)


def invitation_token(output: str, email: str) -> str:
    """The token `mtai tenant import` printed for `email`'s invitation."""
    found = re.search(rf"invitation for {re.escape(email)} .* token (inv_[\w-]+)", output)
    assert found, output
    return found.group(1)


async def searches(client: httpx.AsyncClient, headers: dict[str, str]) -> list[Any]:
    answers = []
    for query in QUERIES:
        for mode in ("vector", "keyword", "hybrid"):
            response = await client.post(
                "/api/v1/rag/search", json={"query": query, "mode": mode}, headers=headers
            )
            assert response.status_code == 200, response.text
            answers.append(
                [
                    (r["chunk_id"], r["text"], round(r["score"], 6))
                    for r in response.json()["results"]
                ]
            )
    return answers


async def test_export_then_import_answers_the_same_searches(
    client: httpx.AsyncClient,
    settings: Settings,
    target: Settings,
    target_client: httpx.AsyncClient,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    tmp_path: Path,
) -> None:
    for text, title in ((LIGHTHOUSE, "Lighthouses"), (GARDEN, "Compost")):
        created = await upload_text(client, tenant_a.owner, text, title=title)
        assert (await wait_done(client, tenant_a.owner, created["id"]))["status"] == "ready"
    await upload_text(client, tenant_b.owner, GARDEN, title="B's compost")
    chat = await client.post(
        "/api/v1/chat/", json={"message": "fog signal?", "use_rag": True}, headers=tenant_a.owner
    )
    assert chat.status_code == 200, chat.text
    before = await searches(client, tenant_a.owner)
    assert all(before), "every search should find something"

    archive = tmp_path / "a.tar.gz"
    exported = await asyncio.to_thread(cli, settings, "export", tenant_a.slug, str(archive))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "document originals: 2" in exported.stdout
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        everything = b"".join(
            handle.read()
            for m in tar.getmembers()
            if m.isfile() and (handle := tar.extractfile(m)) is not None
        )
    assert "manifest.json" in names
    assert sum(n.startswith("objects/") for n in names) == 2
    # Read under the tenant's own row-level security: nothing of tenant B's is in it.
    assert str(tenant_b.id).encode() not in everything
    assert b"B's compost" not in everything

    imported = await asyncio.to_thread(
        cli, target, "import", str(archive), MTAI_STORAGE_DIR=str(target.data_dir / "objects")
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "rag_chunks:" in imported.stdout
    assert "left out" not in imported.stdout  # same secrets: keys and credentials came along
    assert "not signed" not in imported.stdout  # same pepper: the signature verified

    # The owner's identity is new here and has no password: it activates with the invitation.
    password = "a new password for the target"
    accepted = await target_client.post(
        "/api/v1/invitations/accept",
        json={
            "token": invitation_token(imported.stdout, tenant_a.owner_email),
            "password": password,
        },
    )
    assert accepted.status_code == 200, accepted.text
    owner = {"Authorization": f"Bearer {accepted.json()['access_token']}"}
    assert await searches(target_client, owner) == before
    # The API key works there too, the conversation and its citations are there.
    me = await target_client.get("/api/v1/auth/me", headers=tenant_a.api_key)
    assert me.status_code == 200
    conversation = await target_client.get(
        f"/api/v1/chat/conversations/{chat.json()['conversation_id']}", headers=owner
    )
    assert conversation.json()["messages"][1]["citations"] == chat.json()["citations"]
    documents = (await target_client.get("/api/v1/rag/documents", headers=owner)).json()
    assert {d["status"] for d in documents["items"]} == {"ready"}

    again = await asyncio.to_thread(cli, target, "import", str(archive))
    assert again.returncode == 1
    assert "already exists here" in again.stderr + again.stdout

    # Restoring in place: delete the tenant, import it again.
    deleted = await asyncio.to_thread(cli, target, "delete", tenant_a.slug, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    credentials = {"email": tenant_a.owner_email, "password": password}
    gone = await target_client.post(
        "/api/v1/auth/login", json=credentials, headers={"X-Tenant-ID": tenant_a.slug}
    )
    assert gone.status_code in (403, 404), gone.text
    storage = {"MTAI_STORAGE_DIR": str(target.data_dir / "objects")}
    restored = await asyncio.to_thread(cli, target, "import", str(archive), **storage)
    assert restored.returncode == 0, restored.stderr
    # The identity exists now: it is invited again, and accepts while logged in as itself.
    still_out = await target_client.post(
        "/api/v1/auth/login", json=credentials, headers={"X-Tenant-ID": tenant_a.slug}
    )
    assert still_out.status_code in (403, 404), still_out.text
    login = await target_client.post("/api/v1/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    accepted = await target_client.post(
        "/api/v1/invitations/accept",
        json={"token": invitation_token(restored.stdout, tenant_a.owner_email)},
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
    )
    assert accepted.status_code == 200, accepted.text
    owner = {"Authorization": f"Bearer {accepted.json()['access_token']}"}
    assert await searches(target_client, owner) == before


async def test_other_secrets_leave_keys_out_and_bad_archives_are_refused(
    client: httpx.AsyncClient,
    settings: Settings,
    pg_admin_url: str,
    tenant_a: TenantFixture,
    tmp_path: Path,
) -> None:
    archive = tmp_path / "a.tar.gz"
    exported = await asyncio.to_thread(cli, settings, "export", tenant_a.slug, str(archive))
    assert exported.returncode == 0, exported.stderr
    with fresh_database(pg_admin_url) as url:
        await upgrade(url, "mtai_app")
        other = make_settings(url)  # new random secrets
        storage = tempfile.mkdtemp()
        unverified = await asyncio.to_thread(
            cli, other, "import", str(archive), MTAI_STORAGE_DIR=storage
        )
        assert unverified.returncode == 1
        assert "not signed by this deployment" in unverified.stderr
        result = await asyncio.to_thread(
            cli, other, "import", str(archive), "--trust-unsigned", MTAI_STORAGE_DIR=storage
        )
        assert result.returncode == 0, result.stderr
        assert "api_keys row(s) left out" in result.stdout
        assert "MTAI_KEY_PEPPER differs" in result.stdout

    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(tampered, "w:gz") as copy:
        for member in source.getmembers():
            if member.name != "rows/api_keys.jsonl":
                copy.addfile(member, source.extractfile(member))
    refused = await asyncio.to_thread(cli, settings, "import", str(tampered))
    assert refused.returncode == 1
    assert "incomplete or altered" in refused.stderr
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("not an archive")
    assert (
        "not a readable tenant archive"
        in (await asyncio.to_thread(cli, settings, "import", str(junk))).stderr
    )


async def test_every_table_with_tenant_data_is_exported(runtime: Runtime) -> None:
    async with runtime.db.platform() as session:
        with_tenant = await tenant_rows.tables_with_tenant_column(session)
    assert set(with_tenant) == set(tenant_rows.TENANT_TABLES) | set(tenant_rows.NOT_EXPORTED)
