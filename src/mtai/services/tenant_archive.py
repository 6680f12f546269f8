"""One tenant in one portable archive: `mtai tenant export TENANT FILE` / `mtai tenant import FILE`.

The archive is a gzipped tar: `manifest.json`, one JSON-lines file per table, each document's
original under `objects/`, and `signature`. The rows are read inside the tenant's own
row-level security scope, so an export cannot pick up another tenant's rows even by mistake.

The manifest lists the SHA-256 of every other file; `signature` is an HMAC-SHA256 of the
manifest under the deployment's archive signing key (MTAI_ARCHIVE_SIGNING_KEY, or derived from
MTAI_KEY_PEPPER with HKDF), so a round trip through the operator's hands can be verified.
An archive that is unsigned, or signed with another key, or changed after export, is refused
unless the operator passes `trust_unsigned`.

Whether signed or not, an archive is hostile input until checked: every row must belong to the
archive's tenant and point only at rows of the archive, storage keys are recomputed, objects
are accepted only at the keys of the archive's documents (with the bytes their rows' SHA-256
names), and the rows go in through the tenant's own scope, so row-level security checks each
one again. Records the platform made about the tenant (usage, daily roll-ups, prompt logs, the
audit trail) stay in the archive for the operator's records but are never imported: here they
would pass for this deployment's own observations.

Secrets do not travel: API keys are hashed with MTAI_KEY_PEPPER and provider credentials are
encrypted with MTAI_ENCRYPTION_KEY. The manifest carries fingerprints of both; where the target
deployment's differ, those rows would be useless there and are left out (the report says so).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import tarfile
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from mtai import __version__
from mtai.config import Settings, secret_problem
from mtai.db.engine import Database
from mtai.db.migrate import head_revision
from mtai.db.repositories import tenant_rows
from mtai.errors import ConfigurationError, InvalidInput
from mtai.providers.storage.base import ObjectMissing, ObjectStore, document_key
from mtai.services import audit, tenant_settings
from mtai.services.invitations import InvitationService, Issued
from mtai.services.principal import Principal, Role
from mtai.services.secrets import ResolvedSecrets
from mtai.services.tenants import TenantService

FORMAT = "mtai-tenant-archive"
VERSION = 2
MANIFEST = "manifest.json"
SIGNATURE = "signature"
# Rows whose meaning depends on a deployment secret, and the secret's fingerprint name.
NEEDS_SECRET = {"api_keys": "key_pepper", "provider_credentials": "encryption_key"}
# What the platform recorded about the tenant: exported, never imported (a forged usage row
# would lift a budget, a forged audit row would speak for an administrator).
NOT_IMPORTED = ("usage_events", "usage_daily", "prompt_logs", "audit_events")
IMPORTED = tuple(t for t in tenant_rows.TENANT_TABLES if t not in NOT_IMPORTED)
# Columns that point at other rows, and the table whose `id` they name: inside the archive only.
REFERENCES: dict[str, dict[str, str]] = {
    "memberships": {"user_id": "users"},
    "api_keys": {"created_by": "users", "rotated_from": "api_keys"},
    "messages": {"conversation_id": "conversations"},
    "rag_documents": {"collection_id": "rag_collections"},
    "rag_chunks": {"document_id": "rag_documents", "collection_id": "rag_collections"},
    "stored_responses": {"previous_id": "stored_responses"},
}
# The identity columns an archive carries: never a password hash, never platform rights.
USER_COLUMNS = ("id", "email", "display_name", "created_at")
_HKDF_INFO = b"mtai tenant archive signature"


def fingerprints(resolved: ResolvedSecrets) -> dict[str, str]:
    """Tell two deployments' secrets apart without revealing them."""
    return {
        name: hmac.new(value.encode(), FORMAT.encode(), hashlib.sha256).hexdigest()[:16]
        for name, value in (
            ("key_pepper", resolved.key_pepper),
            ("encryption_key", resolved.encryption_key),
        )
    }


def signing_key(settings: Settings, resolved: ResolvedSecrets) -> bytes:
    """The key archives are signed with: MTAI_ARCHIVE_SIGNING_KEY, else derived from the pepper.

    The pepper is required in production and generated in development, so there is always a
    key; a configured one must be as strong as every other secret.
    """
    configured = settings.archive_signing_key
    if configured is not None:
        problem = secret_problem("MTAI_ARCHIVE_SIGNING_KEY", configured)
        if problem:
            raise ConfigurationError(
                f"Refusing to sign or verify tenant archives: {problem}. Set it to a random "
                "value of 32+ characters, e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`, or unset it to derive the key from "
                "MTAI_KEY_PEPPER."
            )
        material = configured.get_secret_value()
    else:
        material = resolved.key_pepper
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return hkdf.derive(material.encode())


Rows = dict[str, list[dict[str, Any]]]


@dataclass
class ArchiveReport:
    tenant_slug: str
    tenant_id: uuid.UUID
    rows: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    notes: list[str] = field(default_factory=list)
    invitations: list[Issued] = field(default_factory=list)


@dataclass
class _Archive:
    manifest: dict[str, Any]
    signed: bool  # signed with this deployment's key, and unchanged since
    rows: Rows
    objects: dict[str, bytes]


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row, separators=(",", ":")).encode() + b"\n" for row in rows)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _collect(rows: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row async for row in rows]


class TenantArchive:
    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        tenants: TenantService,
        invitations: InvitationService,
        secrets: ResolvedSecrets,
        signing_key: bytes,
        max_bytes: int,
    ) -> None:
        self.max_bytes = max_bytes
        self.db = db
        self.store = store
        self.tenants = tenants
        self.invitations = invitations
        self.secrets = secrets
        self.key = signing_key

    def _sign(self, manifest: bytes) -> str:
        return hmac.new(self.key, manifest, hashlib.sha256).hexdigest()

    # -- export --------------------------------------------------------------------------

    async def export(self, tenant_ref: str, path: Path) -> ArchiveReport:
        tenant_id = (await self.tenants.resolve(tenant_ref)).id
        async with self.db.tenant(tenant_id) as session:
            (tenant,) = await _collect(tenant_rows.tenant_row(session, tenant_id))
            tables = {
                t: await _collect(tenant_rows.tenant_rows(session, t, tenant_id))
                for t in tenant_rows.TENANT_TABLES
            }
            users = await _collect(tenant_rows.member_users(session, tenant_id, USER_COLUMNS))
        report = ArchiveReport(tenant["slug"], tenant_id)
        objects: dict[str, bytes] = {}
        for document in tables["rag_documents"]:
            key = document_key(tenant_id, uuid.UUID(document["id"]))
            try:
                objects[key] = await self.store.get(key)
            except ObjectMissing:
                report.notes.append(f"document {document['id']} has no stored original")
        files = {"rows/tenants.jsonl": _jsonl([tenant]), "rows/users.jsonl": _jsonl(users)}
        files |= {f"rows/{table}.jsonl": _jsonl(rows) for table, rows in tables.items()}
        files |= {f"objects/{key}": data for key, data in objects.items()}
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
            "files": {name: _sha256(data) for name, data in sorted(files.items())},
        }
        report.rows = counts
        report.objects = len(objects)
        encoded = json.dumps(manifest, indent=2).encode()
        signature = self._sign(encoded).encode()
        await asyncio.to_thread(self._write, path, encoded, signature, files)
        return report

    @staticmethod
    def _write(path: Path, manifest: bytes, signature: bytes, files: dict[str, bytes]) -> None:
        partial = path.with_name(path.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            _add(tar, MANIFEST, manifest)
            _add(tar, SIGNATURE, signature)
            for name, data in files.items():
                _add(tar, name, data)
        partial.chmod(0o600)
        partial.replace(path)  # a reader never sees half an archive

    # -- import --------------------------------------------------------------------------

    async def import_(
        self, path: Path, actor: Principal, *, trust_unsigned: bool = False
    ) -> ArchiveReport:
        archive = await asyncio.to_thread(self._read, path)
        manifest, rows = archive.manifest, archive.rows
        tenant_id = uuid.UUID(manifest["tenant"]["id"])
        report = ArchiveReport(manifest["tenant"]["slug"], tenant_id)
        if not archive.signed:
            if not trust_unsigned:
                raise InvalidInput(
                    f"{path} is not signed by this deployment: it was changed after export, or "
                    "exported by a deployment with another MTAI_ARCHIVE_SIGNING_KEY (or, "
                    "without one, another MTAI_KEY_PEPPER). Set the exporting deployment's "
                    "signing key here, or, if you trust where the file came from, run again "
                    "with --trust-unsigned (every row is still checked against its tenant)."
                )
            report.notes.append(
                "the archive is not signed by this deployment: imported on --trust-unsigned, "
                "with every row checked against the tenant"
            )
        objects = _checked_rows(tenant_id, manifest["tenant"]["slug"], rows, archive.objects)
        here = fingerprints(self.secrets)
        for table, secret in NEEDS_SECRET.items():
            if rows.get(table) and manifest["fingerprints"].get(secret) != here[secret]:
                report.notes.append(
                    f"{len(rows[table])} {table} row(s) left out: this deployment's "
                    f"MTAI_{secret.upper()} differs from the exporting one's, so they would not "
                    "work here (create new API keys / enter the provider credentials again)"
                )
                rows[table] = []
        left_out = {t: len(rows[t]) for t in NOT_IMPORTED if rows.get(t)}
        if left_out:
            report.notes.append(
                "not imported, kept in the archive for your records: "
                + ", ".join(f"{count} {table}" for table, count in left_out.items())
                + " (usage, prompt logs and audit events are this deployment's own records; "
                "the tenant's spend this month starts again from zero)"
            )
        if not archive.signed:
            # What the platform decides for a tenant (models, limits, budgets) is not taken
            # from a file nobody vouches for.
            archived = rows["tenants"][0].get("settings") or {}
            rows["tenants"][0]["settings"] = {}
            if archived:
                report.notes.append(
                    "the tenant's settings (models, limits, budgets) were not imported from an "
                    "unsigned archive; review them and set them again (PATCH "
                    f"/api/v1/tenants/{tenant_id}): {json.dumps(archived, sort_keys=True)}"
                )
        tenant_settings.parse(rows["tenants"][0].get("settings") or {})
        new_users = await self._check_new_here(tenant_id, report.tenant_slug, rows.get("users", []))
        stored = await self._store_objects(objects, rows.get("rag_documents", []))
        try:
            async with self.db.platform() as session:
                # Platform tables first: the tenant and identities that are new here (no
                # password: each person activates with the invitation below).
                await self._insert(session, "tenants", rows["tenants"])
                await tenant_rows.insert_rows(session, "users", USER_COLUMNS, new_users)
                report.rows["users"] = len(new_users)
                # Everything else as the tenant: row-level security checks each row again.
                await tenant_rows.narrow_to_tenant(session, self.db.app_role, tenant_id)
                for table in IMPORTED:
                    if table == "memberships":
                        continue  # made only by the person accepting the invitation
                    report.rows[table] = await self._insert(session, table, rows.get(table, []))
                for membership in rows.get("memberships", []):
                    email = next(
                        u["email"] for u in rows["users"] if u["id"] == membership["user_id"]
                    )
                    report.invitations.append(
                        await self.invitations.issue_in(
                            session,
                            actor,
                            tenant_id=tenant_id,
                            email=email,
                            role=Role(membership["role"]),
                        )
                    )
                await audit.record(
                    session,
                    actor,
                    "tenant.import",
                    tenant_id=tenant_id,
                    target_type="tenant",
                    target_id=tenant_id,
                    details={
                        "slug": report.tenant_slug,
                        "exported_at": manifest.get("exported_at"),
                        "signed": archive.signed,
                        "rows": report.rows,
                        "not_imported": left_out,
                    },
                )
        except BaseException as exc:
            for key in stored:
                await self.store.delete(key)
            if isinstance(exc, DBAPIError):
                raise InvalidInput(
                    f"The database refused the archive's rows, so nothing was imported: "
                    f"{str(exc.orig).strip()}. An archive exported by mtai and unchanged since "
                    "fits a deployment without this tenant; this one was altered or clashes "
                    "with data here (e.g. an API key prefix or a document id in use)."
                ) from exc
            raise
        report.rows["tenants"] = 1
        report.objects = len(objects)
        return report

    @staticmethod
    async def _insert(session: AsyncSession, table: str, rows: list[dict[str, Any]]) -> int:
        columns = await tenant_rows.insertable_columns(session, table)
        for start in range(0, len(rows), tenant_rows.BATCH_ROWS):
            batch = rows[start : start + tenant_rows.BATCH_ROWS]
            await tenant_rows.insert_rows(session, table, columns, batch)
        return len(rows)

    async def _check_new_here(
        self, tenant_id: uuid.UUID, slug: str, users: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The tenant must be new here; returns the archive's identities that are new too.

        An identity that exists here is never changed nor attached: it gets an invitation like
        anyone else. It must be the same identity (id and email), since rows point at its id.
        """
        async with self.db.platform() as session:
            if await tenant_rows.tenant_exists(session, tenant_id, slug):
                raise InvalidInput(
                    f"Tenant '{slug}' ({tenant_id}) already exists here: delete it first "
                    "(`mtai tenant delete`) or import into another deployment."
                )
            by_email = await tenant_rows.users_by_email(session, [u["email"] for u in users])
            by_id = await tenant_rows.users_by_id(session, [uuid.UUID(u["id"]) for u in users])
        new_users = []
        for user in users:
            user_id = uuid.UUID(user["id"])
            known = by_email.get(user["email"])
            if known is None and user_id in by_id:
                raise InvalidInput(
                    f"The archive's user {user_id} ({user['email']}) is another identity here "
                    f"({by_id[user_id]}). Import into a deployment without that user."
                )
            if known is None:
                new_users.append({c: user.get(c) for c in USER_COLUMNS})
            elif known != user_id:
                raise InvalidInput(
                    f"User {user['email']} exists here with another id; the archive's rows "
                    "point at its own. Import into a deployment without that user."
                )
        return new_users

    async def _store_objects(
        self, objects: Mapping[str, bytes], documents: list[dict[str, Any]]
    ) -> list[str]:
        """Store the originals; returns the keys written (an identical object already there is
        left alone and not returned, so a failed import never deletes what it did not write)."""
        content_types = {
            d["storage_key"]: d["content_type"]
            for d in documents
            if isinstance(d.get("content_type"), str)
        }
        stored: list[str] = []
        try:
            for key, data in objects.items():
                try:
                    if _sha256(await self.store.get(key)) == _sha256(data):
                        continue
                except ObjectMissing:
                    pass
                content_type = content_types.get(key) or "application/octet-stream"
                await self.store.put(key, data, content_type=content_type)
                stored.append(key)
        except BaseException:
            for key in stored:
                await self.store.delete(key)
            raise
        return stored

    def _read(self, path: Path) -> _Archive:
        if not path.is_file():
            raise InvalidInput(f"{path} does not exist or is not a file.")
        try:
            with tarfile.open(path, "r:gz") as tar:
                files: dict[str, bytes] = {}
                unpacked = 0
                for member in tar:  # one header at a time: nothing is read past the limit
                    unpacked += tarfile.BLOCKSIZE + max(member.size, 0)
                    if unpacked > self.max_bytes:
                        raise InvalidInput(
                            f"{path} unpacks to more than MTAI_ARCHIVE_MAX_BYTES "
                            f"({self.max_bytes} bytes), so it was not read. If it is a genuine "
                            "export of a large tenant, raise MTAI_ARCHIVE_MAX_BYTES (the import "
                            "holds the archive in memory) and import again."
                        )
                    if not member.isfile():
                        continue
                    if member.name in files:
                        raise InvalidInput(f"{path} holds {member.name} twice: it was altered.")
                    handle = tar.extractfile(member)
                    assert handle is not None  # a regular file always has one
                    files[member.name] = handle.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InvalidInput(f"{path} is not a readable tenant archive: {exc}") from exc
        if MANIFEST not in files:
            raise InvalidInput(f"{path} has no {MANIFEST}: it is not a tenant archive.")
        encoded = files.pop(MANIFEST)
        signature = files.pop(SIGNATURE, b"").decode("ascii", "replace").strip()
        try:
            manifest = _checked_manifest(path, json.loads(encoded))
            rows = {
                name.removeprefix("rows/").removesuffix(".jsonl"): [
                    json.loads(line) for line in data.splitlines() if line.strip()
                ]
                for name, data in files.items()
                if name.startswith("rows/")
            }
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than the parser goes (a crafted row).
            raise InvalidInput(f"{path} is not a readable tenant archive: {exc}") from exc
        if not all(isinstance(row, dict) for found in rows.values() for row in found):
            raise InvalidInput(f"{path} holds a row that is not a JSON object: it was altered.")
        objects = {
            name.removeprefix("objects/"): data
            for name, data in files.items()
            if name.startswith("objects/")
        }
        listed = manifest.get("files")
        found = {name: _sha256(data) for name, data in files.items()}
        counted = {table: len(items) for table, items in rows.items()}
        if (
            found != listed
            or counted != manifest.get("rows")
            or sorted(objects) != manifest.get("objects")
        ):
            raise InvalidInput(
                f"{path} is incomplete or altered: its files, row counts or objects differ "
                "from what its manifest lists. Export the tenant again."
            )
        signed = hmac.compare_digest(signature, self._sign(encoded))
        return _Archive(manifest, signed, rows, objects)


def _checked_manifest(path: Path, manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(f"{path} is not an {FORMAT}: its manifest names another format.")
    if manifest.get("version") != VERSION:
        raise InvalidInput(
            f"{path} is a version {manifest.get('version')!r} {FORMAT}; this mtai reads version "
            f"{VERSION} only (version 1 archives were not signed and carried password hashes). "
            "Import it with the mtai version that exported it, upgrade, and export it again."
        )
    if manifest.get("schema_revision") != head_revision():
        raise InvalidInput(
            f"The archive was made at schema revision {manifest.get('schema_revision')}, this "
            f"code is at {head_revision()}: import it with the mtai version that exported it "
            f"({manifest.get('mtai_version')}), then upgrade."
        )
    tenant = manifest.get("tenant")
    if (
        not isinstance(tenant, dict)
        or not _is_uuid(tenant.get("id"))
        or not isinstance(tenant.get("slug"), str)
        or not isinstance(manifest.get("fingerprints"), dict)
    ):
        raise InvalidInput(f"{path}'s manifest names no tenant or fingerprints: it was altered.")
    return manifest


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _refuse(table: str, number: int, problem: str) -> InvalidInput:
    return InvalidInput(
        f"Refusing the archive: row {number} of {table} {problem}. The archive was altered; "
        "nothing was imported."
    )


def _checked_rows(
    tenant_id: uuid.UUID, slug: str, rows: Rows, objects: dict[str, bytes]
) -> dict[str, bytes]:
    """Check every row against the archive's tenant; recompute storage keys; return the
    objects to store (only the originals of the archive's documents)."""
    known = {"tenants", "users", *tenant_rows.TENANT_TABLES}
    if unknown := sorted(set(rows) - known):
        raise InvalidInput(f"Refusing the archive: it holds rows of unknown tables {unknown}.")
    for table in known:
        rows.setdefault(table, [])
    tenants = rows.get("tenants", [])
    if (
        len(tenants) != 1
        or tenants[0].get("id") != str(tenant_id)
        or tenants[0].get("slug") != slug
    ):
        raise InvalidInput(
            f"Refusing the archive: its tenants rows must be exactly its own tenant "
            f"'{slug}' ({tenant_id}). The archive was altered; nothing was imported."
        )
    ids: dict[str, set[str]] = {}
    for table in (
        "users",
        "api_keys",
        "conversations",
        "rag_collections",
        "rag_documents",
        "stored_responses",
    ):
        ids[table] = set()
        for number, row in enumerate(rows.get(table, []), 1):
            if not _is_uuid(row.get("id")) or row["id"] in ids[table]:
                raise _refuse(table, number, "has a missing or repeated id")
            ids[table].add(row["id"])
    for table in tenant_rows.TENANT_TABLES:
        references = REFERENCES.get(table, {})
        for number, row in enumerate(rows.get(table, []), 1):
            if row.get("tenant_id") != str(tenant_id):
                raise _refuse(
                    table, number, f"belongs to tenant {row.get('tenant_id')}, not to {tenant_id}"
                )
            for column, target in references.items():
                value = row.get(column)
                if value is not None and (not isinstance(value, str) or value not in ids[target]):
                    raise _refuse(table, number, f"names {column} {value}, not in the archive")
    roles = {role.value for role in Role}
    for number, membership in enumerate(rows.get("memberships", []), 1):
        role = membership.get("role")
        if membership.get("user_id") is None or not isinstance(role, str) or role not in roles:
            raise _refuse("memberships", number, "names no user or no known role")
    members = {m["user_id"] for m in rows.get("memberships", [])}
    for number, user in enumerate(rows.get("users", []), 1):
        if user["id"] not in members:
            raise _refuse("users", number, "is no member of the archive's tenant")
        if not isinstance(user.get("email"), str) or user["email"] != user["email"].strip().lower():
            raise _refuse("users", number, "has no valid email")
    expected: dict[str, str] = {}
    for document in rows.get("rag_documents", []):
        key = document_key(tenant_id, uuid.UUID(document["id"]))
        document["storage_key"] = key  # never the archive's word for where bytes live
        expected[key] = document.get("sha256", "")
    for key, data in objects.items():
        if key not in expected:
            raise InvalidInput(
                f"Refusing the archive: it carries an object at {key}, which is not the "
                f"original of one of its documents (those are under tenants/{tenant_id}/). "
                "The archive was altered; nothing was imported."
            )
        if _sha256(data) != expected[key]:
            raise InvalidInput(
                f"Refusing the archive: the object at {key} is not the document its row "
                "describes (SHA-256 differs). The archive was altered; nothing was imported."
            )
    return objects
