"""Finding 4: `mtai tenant import` trusted the archive.

Each test exports a real tenant (the attacker's, A), edits the archive the way an attacker who
holds it would (rows, object files, the manifest's counts and checksums made consistent again),
deletes A, and has the operator import the edited archive with `--trust-unsigned` (the operator
trusting the file is the attacker's best case: every row must still be checked). Tenant B is the
victim on the same deployment.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import tarfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mtai.config import Settings
from mtai.db.repositories import tenant_rows
from mtai.errors import ConfigurationError
from mtai.providers.storage.base import ObjectMissing, document_key
from mtai.runtime import Runtime
from mtai.services import secrets as secrets_service
from mtai.services.tenant_archive import signing_key
from tests.conftest import TenantFixture, run_mtai
from tests.integration.test_rag import upload_text
from tests.support.archives import EditableArchive

TRUST = ("--trust-unsigned",)
B_SECRET = "Tenant B's merger plan: the board meets on the 14th."


async def mtai(settings: Settings, *args: str) -> tuple[int, str]:
    done = await asyncio.to_thread(run_mtai, settings, "tenant", *args)
    return done.returncode, done.stdout + done.stderr


async def export_and_delete(settings: Settings, tenant: TenantFixture, path: Path) -> Path:
    code, out = await mtai(settings, "export", tenant.slug, str(path))
    assert code == 0, out
    code, out = await mtai(settings, "delete", tenant.slug, "--yes")
    assert code == 0, out
    return path


async def import_(settings: Settings, path: Path, *flags: str) -> tuple[int, str]:
    return await mtai(settings, "import", str(path), *flags)


async def rows(runtime: Runtime, table: str, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    async with runtime.db.tenant(tenant_id) as session:
        return [row async for row in tenant_rows.tenant_rows(session, table, tenant_id)]


async def tenant_exists(runtime: Runtime, tenant_id: uuid.UUID) -> bool:
    async with runtime.db.platform() as session:
        return await tenant_rows.tenant_exists(session, tenant_id, "-")


async def b_document(
    client: httpx.AsyncClient, runtime: Runtime, tenant_b: TenantFixture
) -> tuple[str, bytes]:
    """B's stored original: its key and its bytes."""
    created = await upload_text(client, tenant_b.owner, B_SECRET, title="Merger")
    key = document_key(tenant_b.id, uuid.UUID(created["id"]))
    return key, await runtime.store.get(key)


async def a_document(client: httpx.AsyncClient, tenant_a: TenantFixture) -> str:
    created = await upload_text(client, tenant_a.owner, "A's own notes.", title="Notes")
    document_id: str = created["id"]
    return document_id


async def test_membership_rows_cannot_name_another_tenant(
    client: httpx.AsyncClient,
    runtime: Runtime,
    settings: Settings,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    tmp_path: Path,
) -> None:
    """(a) A membership row with B's tenant id would make A's owner an owner of B."""
    archive = EditableArchive.load(await export_and_delete(settings, tenant_a, tmp_path / "a"))
    (owner,) = [u for u in archive.rows("users") if u["email"] == tenant_a.owner_email]
    archive.add_row(
        "memberships",
        {
            "tenant_id": str(tenant_b.id),
            "user_id": owner["id"],
            "role": "owner",
            "created_at": "2026-01-01T00:00:00+00:00",
        },
    )
    code, out = await import_(settings, archive.save(tmp_path / "crafted"), *TRUST)

    assert code != 0, out
    assert str(tenant_b.id) in out  # the refusal names the foreign tenant
    assert not await tenant_exists(runtime, tenant_a.id)  # nothing of the archive went in
    b_members = {r["user_id"] for r in await rows(runtime, "memberships", tenant_b.id)}
    assert owner["id"] not in b_members
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password},
        headers={"X-Tenant-ID": tenant_b.slug},
    )
    assert login.status_code in (401, 403, 404), login.text


async def test_storage_key_cannot_point_into_another_tenant(
    client: httpx.AsyncClient,
    runtime: Runtime,
    settings: Settings,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    tmp_path: Path,
) -> None:
    """(b) A's document row names B's original as its storage key: reading it (ingestion reads
    the key) and deleting A's document (which deletes the key) would hit B's original."""
    b_key, b_bytes = await b_document(client, runtime, tenant_b)
    document_id = await a_document(client, tenant_a)
    archive = EditableArchive.load(await export_and_delete(settings, tenant_a, tmp_path / "a"))
    archive.set_rows(
        "rag_documents",
        [
            {**d, "storage_key": b_key} if d["id"] == document_id else d
            for d in archive.rows("rag_documents")
        ],
    )
    code, out = await import_(settings, archive.save(tmp_path / "crafted"), *TRUST)
    assert code == 0, out

    (imported,) = await rows(runtime, "rag_documents", tenant_a.id)
    assert imported["storage_key"] == document_key(tenant_a.id, uuid.UUID(document_id))
    deleted = await client.delete(f"/api/v1/rag/documents/{document_id}", headers=tenant_a.api_key)
    assert deleted.status_code == 204, deleted.text
    assert await runtime.store.get(b_key) == b_bytes


async def test_objects_outside_the_tenant_or_its_documents_are_refused(
    client: httpx.AsyncClient,
    runtime: Runtime,
    settings: Settings,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    tmp_path: Path,
) -> None:
    """(c) An object file at B's key would overwrite B's original; one under A's prefix that is
    no document of the archive would be stored for nothing (or for a later row to adopt)."""
    b_key, b_bytes = await b_document(client, runtime, tenant_b)
    await a_document(client, tenant_a)
    source = await export_and_delete(settings, tenant_a, tmp_path / "a")

    archive = EditableArchive.load(source)
    archive.put_object(b_key, b"overwritten by A")
    code, out = await import_(settings, archive.save(tmp_path / "crafted-b"), *TRUST)
    assert code != 0, out
    assert b_key in out
    assert await runtime.store.get(b_key) == b_bytes
    assert not await tenant_exists(runtime, tenant_a.id)

    stray = f"tenants/{tenant_a.id}/documents/{uuid.uuid4()}/original"
    archive = EditableArchive.load(source)
    archive.put_object(stray, b"not a document of the archive")
    code, out = await import_(settings, archive.save(tmp_path / "crafted-stray"), *TRUST)
    assert code != 0, out
    assert stray in out
    try:
        await runtime.store.get(stray)
        raise AssertionError("the stray object was stored")
    except ObjectMissing:
        pass


async def test_a_failing_import_deletes_only_what_it_wrote(
    client: httpx.AsyncClient,
    runtime: Runtime,
    settings: Settings,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    tmp_path: Path,
) -> None:
    """(d) The archive carries an object at B's key and a row that makes the database refuse the
    import (B's API key prefix, which is unique): the cleanup after the failure would delete
    B's original. A failure with honest objects removes A's originals and nothing else."""
    b_key, b_bytes = await b_document(client, runtime, tenant_b)
    document_id = await a_document(client, tenant_a)
    source = await export_and_delete(settings, tenant_a, tmp_path / "a")
    (b_api_key,) = await rows(runtime, "api_keys", tenant_b.id)

    for name, with_b_object in (("with-b-object", True), ("honest-objects", False)):
        archive = EditableArchive.load(source)
        if with_b_object:
            archive.put_object(b_key, b_bytes)  # the same bytes: nothing looks overwritten
        (key,) = archive.rows("api_keys")
        archive.add_row("api_keys", {**key, "id": str(uuid.uuid4()), "prefix": b_api_key["prefix"]})
        code, out = await import_(settings, archive.save(tmp_path / name), *TRUST)
        assert code != 0, out
        assert "Traceback" not in out
        if not with_b_object:
            assert "database refused the archive's rows" in out
        assert await runtime.store.get(b_key) == b_bytes, name
        assert not await tenant_exists(runtime, tenant_a.id)
        a_key = document_key(tenant_a.id, uuid.UUID(document_id))
        try:
            await runtime.store.get(a_key)
            raise AssertionError(f"{name}: the failed import left {a_key} behind")
        except ObjectMissing:
            pass


async def test_usage_and_audit_rows_are_never_imported_as_native(
    client: httpx.AsyncClient,
    runtime: Runtime,
    settings: Settings,
    tenant_a: TenantFixture,
    tmp_path: Path,
) -> None:
    """(e) A negative usage row would lift the month's spend under the budget; an audit row
    would put words in a platform administrator's mouth."""
    archive = EditableArchive.load(await export_and_delete(settings, tenant_a, tmp_path / "a"))
    forged_request = f"forged-{secrets.token_hex(6)}"
    archive.add_row(
        "usage_events",
        {
            "request_id": forged_request,
            "tenant_id": str(tenant_a.id),
            "user_id": None,
            "api_key_id": None,
            "model": "gpt-x",
            "provider": "openai",
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": -1000000,
            "latency_ms": 1,
            "ttft_ms": None,
            "status": "ok",
            "error_code": None,
            "cached": False,
            "api": "openai",
            "created_at": "2026-01-01T00:00:00+00:00",
        },
    )
    archive.add_row(
        "audit_events",
        {
            "id": 1,
            "tenant_id": str(tenant_a.id),
            "actor_type": "user",
            "actor_id": str(uuid.uuid4()),
            "action": "forged.budget_waived",
            "target_type": "tenant",
            "target_id": str(tenant_a.id),
            "details": {"by": "platform admin"},
            "request_id": forged_request,
            "created_at": "2026-01-01T00:00:00+00:00",
        },
    )
    code, out = await import_(settings, archive.save(tmp_path / "crafted"), *TRUST)
    assert code == 0, out

    usage = await rows(runtime, "usage_events", tenant_a.id)
    assert forged_request not in {u["request_id"] for u in usage}
    async with runtime.db.tenant(tenant_a.id) as session:
        forged = await session.execute(
            text("SELECT count(*) FROM audit_events WHERE action = 'forged.budget_waived'")
        )
        assert forged.scalar_one() == 0
        imported = await session.execute(
            text("SELECT count(*) FROM audit_events WHERE action = 'tenant.import'")
        )
        assert imported.scalar_one() == 1


async def test_unsigned_or_altered_archives_need_trust_unsigned(
    runtime: Runtime,
    settings: Settings,
    tenant_a: TenantFixture,
    tmp_path: Path,
) -> None:
    """(f) An archive whose content changed after export (here: a conversation renamed, every
    count and checksum redone) or that carries no signature is refused, unless the operator
    says --trust-unsigned."""
    source = await export_and_delete(settings, tenant_a, tmp_path / "a")
    archive = EditableArchive.load(source)
    archive.set_rows("tenants", [{**archive.rows("tenants")[0], "name": "Renamed by attacker"}])
    altered = archive.save(tmp_path / "altered")
    code, out = await import_(settings, altered)
    assert code != 0, out
    assert "--trust-unsigned" in out
    assert not await tenant_exists(runtime, tenant_a.id)

    unsigned = EditableArchive.load(source)
    unsigned.members = {n: d for n, d in unsigned.members.items() if n != "signature"}
    code, out = await import_(settings, unsigned.save(tmp_path / "unsigned"))
    assert code != 0, out
    assert "--trust-unsigned" in out
    assert not await tenant_exists(runtime, tenant_a.id)

    code, out = await import_(settings, altered, *TRUST)
    assert code == 0, out
    assert "not signed by this deployment" in out
    (tenant,) = await rows_of_tenant(runtime, tenant_a.id)
    assert tenant["name"] == "Renamed by attacker"


async def rows_of_tenant(runtime: Runtime, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    async with runtime.db.tenant(tenant_id) as session:
        return [row async for row in tenant_rows.tenant_row(session, tenant_id)]


async def test_row_level_security_checks_every_imported_row_again(
    runtime: Runtime, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    """The second layer: in the import's transaction, once narrowed to the archive's tenant, a
    row of another tenant that the checks missed is refused by the database itself."""
    with pytest.raises(DBAPIError, match="row-level security"):
        async with runtime.db.platform() as session:
            await tenant_rows.narrow_to_tenant(session, runtime.db.app_role, tenant_a.id)
            await tenant_rows.insert_rows(
                session,
                "memberships",
                ["tenant_id", "user_id", "role"],
                [
                    {
                        "tenant_id": str(tenant_b.id),
                        "user_id": str(tenant_a.member_id),
                        "role": "owner",
                    }
                ],
            )
    assert str(tenant_a.member_id) not in {
        r["user_id"] for r in await rows(runtime, "memberships", tenant_b.id)
    }


def test_the_signing_key_is_strong_and_shared_only_on_purpose(settings: Settings) -> None:
    """Derived from the pepper unless MTAI_ARCHIVE_SIGNING_KEY is set; a weak one is refused."""
    resolved = secrets_service.resolve(settings)
    other = secrets_service.ResolvedSecrets("j" * 40, "another pepper" * 4, "e" * 40)
    assert signing_key(settings, resolved) != signing_key(settings, other)
    shared = settings.model_copy(update={"archive_signing_key": SecretStr("s" * 48)})
    assert signing_key(shared, resolved) == signing_key(shared, other)
    weak = settings.model_copy(update={"archive_signing_key": SecretStr("changeme")})
    with pytest.raises(ConfigurationError, match="MTAI_ARCHIVE_SIGNING_KEY"):
        signing_key(weak, resolved)


async def test_an_archive_of_the_previous_format_is_refused_clearly(
    settings: Settings, tenant_a: TenantFixture, tmp_path: Path
) -> None:
    code, out = await mtai(settings, "export", tenant_a.slug, str(tmp_path / "a"))
    assert code == 0, out
    archive = EditableArchive.load(tmp_path / "a")
    manifest = archive.manifest
    archive.members["manifest.json"] = json.dumps({**manifest, "version": 1}).encode()
    code, out = await import_(settings, archive.save(tmp_path / "old"), *TRUST)
    assert code != 0, out
    assert "version 1" in out
    assert "export it again" in out


@pytest.mark.parametrize(
    ("column", "value"),
    [("user_id", ["a list where a user id belongs"]), ("role", {"an": "object"})],
)
async def test_a_reference_of_the_wrong_json_type_is_refused_not_a_traceback(
    settings: Settings,
    runtime: Runtime,
    tenant_a: TenantFixture,
    tmp_path: Path,
    column: str,
    value: Any,
) -> None:
    """A membership's user_id or role that is a JSON array or object: a clear refusal."""
    archive = EditableArchive.load(await export_and_delete(settings, tenant_a, tmp_path / "a"))
    memberships = archive.rows("memberships")
    memberships[0][column] = value
    archive.set_rows("memberships", memberships)
    code, out = await import_(settings, archive.save(tmp_path / "crafted"), *TRUST)
    assert code != 0, out
    assert "Traceback" not in out, out
    assert "Refusing the archive: row 1 of memberships" in out, out
    assert not await tenant_exists(runtime, tenant_a.id)


class _Zeros(io.RawIOBase):
    """`size` zero bytes, read in pieces: a member that gzip shrinks a thousandfold."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


async def test_a_decompression_bomb_is_refused_before_it_is_read(
    settings: Settings, tmp_path: Path
) -> None:
    """A small .tar.gz whose member inflates to far more than any archive may hold: refused by
    its declared size, naming the limit, instead of read whole into memory."""
    inflated = 256 * 1024 * 1024
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("rows/conversations.jsonl")
        info.size = inflated
        tar.addfile(info, _Zeros(inflated))
    assert bomb.stat().st_size < inflated // 100
    done = await asyncio.to_thread(
        run_mtai,
        settings,
        "tenant",
        "import",
        str(bomb),
        *TRUST,
        MTAI_ARCHIVE_MAX_BYTES=str(64 * 1024 * 1024),
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "Traceback" not in out, out
    assert "MTAI_ARCHIVE_MAX_BYTES" in out, out


async def test_a_row_nested_beyond_the_parsers_depth_is_refused_not_a_traceback(
    settings: Settings, runtime: Runtime, tenant_a: TenantFixture, tmp_path: Path
) -> None:
    archive = EditableArchive.load(await export_and_delete(settings, tenant_a, tmp_path / "a"))
    archive.members["rows/conversations.jsonl"] = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    code, out = await import_(settings, archive.save(tmp_path / "deep"), *TRUST)
    assert code != 0, out
    assert "Traceback" not in out, out
    assert "not a readable tenant archive" in out, out
    assert not await tenant_exists(runtime, tenant_a.id)


async def test_a_stored_response_cannot_link_to_a_response_outside_the_archive(
    settings: Settings,
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    tmp_path: Path,
) -> None:
    """A forged `previous_id` pointing at tenant B's stored response is refused on import."""
    ids = []
    for tenant in (tenant_a, tenant_b):
        made = await client.post(
            "/v1/responses",
            json={"model": "extractive", "input": "hello"},
            headers={"Authorization": f"Bearer {tenant.key}"},
        )
        assert made.status_code == 200, made.text
        ids.append(made.json()["id"])
    archive = EditableArchive.load(await export_and_delete(settings, tenant_a, tmp_path / "a"))
    stored = archive.rows("stored_responses")
    assert len(stored) == 1
    victims = await rows(runtime, "stored_responses", tenant_b.id)
    stored[0]["previous_id"] = str(victims[0]["id"])
    archive.set_rows("stored_responses", stored)
    code, out = await import_(settings, archive.save(tmp_path / "crafted"), *TRUST)
    assert code != 0, out
    assert "row 1 of stored_responses" in out, out
    assert "previous_id" in out, out
    assert not await tenant_exists(runtime, tenant_a.id)
