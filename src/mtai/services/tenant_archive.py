"""One tenant in one portable archive: `mtai tenant export TENANT FILE` / `mtai tenant import FILE`.

The archive is a gzipped tar: `manifest.json`, one JSON-lines file per table, and each
document's original under `objects/`. The rows are read inside the tenant's own row-level
security scope, so an export cannot pick up another tenant's rows even by mistake.

Importing checks everything before it writes: the archive's schema revision must be this
code's, the tenant (id or slug) must be new here, and its users must be new or the same users
(same id and email). The originals are stored first, then every row goes in one transaction;
if that fails, the stored originals are deleted again, so a failed import leaves nothing.

Secrets do not travel: API keys are hashed with MTAI_KEY_PEPPER and provider credentials are
encrypted with MTAI_ENCRYPTION_KEY. The manifest carries fingerprints of both; where the target
deployment's differ, those rows would be useless there and are left out (the report says so).
Imported users never become platform administrators.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import tarfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mtai import __version__
from mtai.db.engine import Database
from mtai.db.migrate import head_revision
from mtai.db.repositories import tenant_rows
from mtai.errors import InvalidInput
from mtai.providers.storage.base import ObjectMissing, ObjectStore, document_key
from mtai.services.secrets import ResolvedSecrets
from mtai.services.tenants import TenantService

FORMAT = "mtai-tenant-archive"
VERSION = 1
MANIFEST = "manifest.json"
# Rows whose meaning depends on a deployment secret, and the secret's fingerprint name.
NEEDS_SECRET = {"api_keys": "key_pepper", "provider_credentials": "encryption_key"}


def fingerprints(resolved: ResolvedSecrets) -> dict[str, str]:
    """Tell two deployments' secrets apart without revealing them."""
    return {
        name: hmac.new(value.encode(), FORMAT.encode(), hashlib.sha256).hexdigest()[:16]
        for name, value in (
            ("key_pepper", resolved.key_pepper),
            ("encryption_key", resolved.encryption_key),
        )
    }


Rows = dict[str, list[dict[str, Any]]]


@dataclass
class ArchiveReport:
    tenant_slug: str
    tenant_id: uuid.UUID
    rows: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    notes: list[str] = field(default_factory=list)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row, separators=(",", ":")).encode() + b"\n" for row in rows)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


async def _collect(rows: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row async for row in rows]


class TenantArchive:
    def __init__(
        self, db: Database, store: ObjectStore, tenants: TenantService, secrets: ResolvedSecrets
    ) -> None:
        self.db = db
        self.store = store
        self.tenants = tenants
        self.secrets = secrets

    # -- export --------------------------------------------------------------------------

    async def export(self, tenant_ref: str, path: Path) -> ArchiveReport:
        tenant_id = (await self.tenants.resolve(tenant_ref)).id
        async with self.db.tenant(tenant_id) as session:
            tables = {
                t: await _collect(tenant_rows.tenant_rows(session, t, tenant_id))
                for t in tenant_rows.TENANT_TABLES
            }
        async with self.db.platform() as session:
            (tenant,) = await _collect(tenant_rows.tenant_row(session, tenant_id))
            users = await _collect(tenant_rows.member_users(session, tenant_id))
        report = ArchiveReport(tenant["slug"], tenant_id)
        objects: dict[str, bytes] = {}
        for document in tables["rag_documents"]:
            key = document_key(tenant_id, uuid.UUID(document["id"]))
            try:
                objects[key] = await self.store.get(key)
            except ObjectMissing:
                report.notes.append(f"document {document['id']} has no stored original")
        counts = {"tenants": 1, "users": len(users), **{t: len(r) for t, r in tables.items()}}
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "mtai_version": __version__,
            "schema_revision": head_revision(),
            "exported_at": datetime.now(UTC).isoformat(),
            "tenant": {"id": str(tenant_id), "slug": tenant["slug"]},
            "fingerprints": fingerprints(self.secrets),
            "rows": counts,
            "objects": sorted(objects),
        }
        report.rows = counts
        report.objects = len(objects)
        await asyncio.to_thread(self._write, path, manifest, tenant, users, tables, objects)
        return report

    @staticmethod
    def _write(
        path: Path,
        manifest: dict[str, Any],
        tenant: dict[str, Any],
        users: list[dict[str, Any]],
        tables: dict[str, list[dict[str, Any]]],
        objects: dict[str, bytes],
    ) -> None:
        partial = path.with_name(path.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            _add(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
            _add(tar, "rows/tenants.jsonl", _jsonl([tenant]))
            _add(tar, "rows/users.jsonl", _jsonl(users))
            for table, rows in tables.items():
                _add(tar, f"rows/{table}.jsonl", _jsonl(rows))
            for key, data in objects.items():
                _add(tar, f"objects/{key}", data)
        partial.chmod(0o600)
        partial.replace(path)  # a reader never sees half an archive

    # -- import --------------------------------------------------------------------------

    async def import_(self, path: Path) -> ArchiveReport:
        manifest, rows, objects = await asyncio.to_thread(self._read, path)
        tenant = rows["tenants"][0]
        tenant_id = uuid.UUID(tenant["id"])
        report = ArchiveReport(tenant["slug"], tenant_id)
        here = fingerprints(self.secrets)
        for table, secret in NEEDS_SECRET.items():
            if rows.get(table) and manifest["fingerprints"].get(secret) != here[secret]:
                report.notes.append(
                    f"{len(rows[table])} {table} row(s) left out: this deployment's "
                    f"MTAI_{secret.upper()} differs from the exporting one's, so they would not "
                    "work here (create new API keys / enter the provider credentials again)"
                )
                rows[table] = []
        async with self.db.platform() as session:
            if await tenant_rows.tenant_exists(session, tenant_id, tenant["slug"]):
                raise InvalidInput(
                    f"Tenant '{tenant['slug']}' ({tenant_id}) already exists here: delete it "
                    "first (`mtai tenant delete`) or import into another deployment."
                )
            emails = [u["email"] for u in rows["users"]]
            existing = await tenant_rows.users_by_email(session, emails)
        new_users = []
        for user in rows["users"]:
            known = existing.get(user["email"])
            if known is None:
                new_users.append({**user, "is_platform_admin": False})
            elif known != uuid.UUID(user["id"]):
                raise InvalidInput(
                    f"User {user['email']} exists here with another id; the archive's rows "
                    "point at its own. Import into a deployment without that user."
                )
        rows["users"] = new_users
        content_types = {
            document_key(tenant_id, uuid.UUID(d["id"])): d.get("content_type")
            for d in rows.get("rag_documents", [])
        }
        stored: list[str] = []
        try:
            for key, data in objects.items():
                content_type = content_types.get(key) or "application/octet-stream"
                await self.store.put(key, data, content_type=content_type)
                stored.append(key)
            async with self.db.platform() as session:
                for table in ("tenants", "users", *tenant_rows.TENANT_TABLES):
                    columns = await tenant_rows.insertable_columns(session, table)
                    batch = rows.get(table, [])
                    for start in range(0, len(batch), tenant_rows.BATCH_ROWS):
                        await tenant_rows.insert_rows(
                            session, table, columns, batch[start : start + tenant_rows.BATCH_ROWS]
                        )
                    report.rows[table] = len(batch)
        except BaseException:
            for key in stored:
                await self.store.delete(key)
            raise
        report.objects = len(stored)
        return report

    @staticmethod
    def _read(path: Path) -> tuple[dict[str, Any], Rows, dict[str, bytes]]:
        if not path.is_file():
            raise InvalidInput(f"{path} does not exist or is not a file.")
        try:
            with tarfile.open(path, "r:gz") as tar:
                members = {m.name: m for m in tar.getmembers() if m.isfile()}

                def read(name: str) -> bytes:
                    handle = tar.extractfile(members[name])
                    assert handle is not None
                    return handle.read()

                if MANIFEST not in members:
                    raise InvalidInput(f"{path} has no {MANIFEST}: it is not a tenant archive.")
                manifest = _checked_manifest(path, json.loads(read(MANIFEST)))
                rows = {
                    name.removeprefix("rows/").removesuffix(".jsonl"): [
                        json.loads(line) for line in read(name).splitlines() if line.strip()
                    ]
                    for name in members
                    if name.startswith("rows/")
                }
                objects = {
                    name.removeprefix("objects/"): read(name)
                    for name in members
                    if name.startswith("objects/")
                }
        except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"{path} is not a readable tenant archive: {exc}") from exc
        counted = {table: len(found) for table, found in rows.items()}
        if counted != manifest["rows"] or sorted(objects) != manifest["objects"]:
            raise InvalidInput(
                f"{path} is incomplete or altered: the manifest lists {manifest['rows']} rows "
                f"and {len(manifest['objects'])} objects; the archive holds {counted} and "
                f"{len(objects)}."
            )
        return manifest, rows, objects


def _checked_manifest(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InvalidInput(
            f"{path} is not a version {VERSION} {FORMAT} (found "
            f"{manifest.get('format')!r} version {manifest.get('version')!r})."
        )
    if manifest.get("schema_revision") != head_revision():
        raise InvalidInput(
            f"The archive was made at schema revision {manifest.get('schema_revision')}, this "
            f"code is at {head_revision()}: import it with the mtai version that exported it "
            f"({manifest.get('mtai_version')}), then upgrade."
        )
    return manifest
