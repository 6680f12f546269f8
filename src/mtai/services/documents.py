"""Documents: upload (kept as the original in object storage), listing, deletion, statistics.

An upload returns at once with the document queued; the ingestion worker does the rest. The
original is written to storage before its row exists, and the row before the job is sent, so
every state a crash can leave is one the reaper repairs: an orphan object is harmless, and a
queued row whose message was lost is sent again when its lease runs out.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from mtai.db.engine import Database
from mtai.db.models import Collection, Document
from mtai.db.repositories import chunks as chunks_repo
from mtai.db.repositories import collections as collections_repo
from mtai.db.repositories import documents as documents_repo
from mtai.errors import Forbidden, NotFound, TooLarge
from mtai.logging import get_logger
from mtai.providers.storage.base import ObjectStore, document_key
from mtai.services import audit, tenant_settings
from mtai.services.auth import Authenticator
from mtai.services.knowledge_bases import KnowledgeBaseService, actor_label
from mtai.services.metering import Meter
from mtai.services.principal import Principal, Scope

log = get_logger(__name__)
Enqueue = Callable[[uuid.UUID, uuid.UUID], Awaitable[None]]
MAX_TITLE_CHARS = 500


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None
    content_type: str | None
    title: str | None
    description: str
    collection: str | None  # id or name; None: the 'default' knowledge base
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Uploaded:
    document: Document
    duplicate: bool  # the same content was already in that knowledge base


@dataclass(frozen=True)
class Stats:
    collections: int
    documents: int
    by_status: dict[str, int]
    chunks: int
    tokens: int
    bytes: int


def _title(upload: Upload) -> str:
    title = (upload.title or upload.filename or "").strip()
    if not title:
        words = upload.data[:200].decode("utf-8", "replace").split()
        title = " ".join(words[:8]) or "Untitled"
    return title[:MAX_TITLE_CHARS]


class DocumentService:
    def __init__(
        self,
        db: Database,
        auth: Authenticator,
        store: ObjectStore,
        knowledge_bases: KnowledgeBaseService,
        enqueue: Enqueue,
        *,
        max_upload_bytes: int,
        max_documents: int,
        lease_seconds: float,
        meter: Meter,
    ) -> None:
        self.meter = meter
        self.db = db
        self.auth = auth
        self.store = store
        self.knowledge_bases = knowledge_bases
        self.enqueue = enqueue
        self.max_upload_bytes = max_upload_bytes
        self.max_documents = max_documents
        self.lease_seconds = lease_seconds

    async def _limits(self, tenant_id: uuid.UUID) -> tuple[int, int]:
        policy = tenant_settings.parse(await self.auth.tenant_settings(tenant_id))
        size = min(policy.max_upload_bytes or self.max_upload_bytes, self.max_upload_bytes)
        count = self.max_documents if policy.max_documents is None else policy.max_documents
        return size, count

    async def upload(self, principal: Principal, upload: Upload) -> Uploaded:
        principal.require_scope(Scope.RAG_WRITE)
        tenant_id = principal.require_tenant()
        max_bytes, max_count = await self._limits(tenant_id)
        if len(upload.data) > max_bytes:
            raise TooLarge(
                f"The file is {len(upload.data)} bytes; the limit is {max_bytes}. "
                "Split it into smaller documents."
            )
        # Counted and refused like any metered request; its embedding is charged once done.
        await self.meter.admit_request(principal)
        digest = hashlib.sha256(upload.data).hexdigest()
        async with self.db.tenant(tenant_id) as session:
            collection = await self.knowledge_bases.for_upload(
                session, principal, upload.collection
            )
            existing = await documents_repo.by_content(session, collection.id, digest)
            if existing is not None:
                return Uploaded(existing, duplicate=True)
            if await documents_repo.count(session) >= max_count:
                raise Forbidden(
                    f"This tenant holds {max_count} documents, the most allowed; delete some or "
                    "ask the platform administrator to raise max_documents.",
                    code="document_limit",
                )
        document_id = uuid.uuid4()
        key = document_key(tenant_id, document_id)
        await self.store.put(
            key, upload.data, content_type=upload.content_type or "application/octet-stream"
        )
        try:
            document = await self._insert(principal, collection, document_id, key, digest, upload)
        except IntegrityError:
            # The same content arrived twice at once and the other upload won.
            await self.store.delete(key)
            async with self.db.tenant(tenant_id) as session:
                winner = await documents_repo.by_content(session, collection.id, digest)
            if winner is None:
                raise
            return Uploaded(winner, duplicate=True)
        try:
            await self.enqueue(tenant_id, document.id)
        except Exception:
            # Not lost: the reaper sends it again when its lease runs out.
            log.warning("rag.enqueue_failed", document_id=str(document.id), exc_info=True)
        return Uploaded(document, duplicate=False)

    async def _insert(
        self,
        principal: Principal,
        collection: Collection,
        document_id: uuid.UUID,
        key: str,
        digest: str,
        upload: Upload,
    ) -> Document:
        tenant_id = principal.require_tenant()
        async with self.db.tenant(tenant_id) as session:
            document = await documents_repo.add(
                session,
                Document(
                    id=document_id,
                    tenant_id=tenant_id,
                    collection_id=collection.id,
                    title=_title(upload),
                    description=upload.description,
                    filename=upload.filename,
                    content_type=upload.content_type,
                    size_bytes=len(upload.data),
                    sha256=digest,
                    storage_key=key,
                    status="queued",
                    lease_until=datetime.now(UTC) + timedelta(seconds=self.lease_seconds),
                    doc_metadata=upload.metadata,
                    created_by=actor_label(principal),
                ),
            )
            await audit.record(
                session,
                principal,
                "document.upload",
                tenant_id=tenant_id,
                target_type="document",
                target_id=document_id,
                details={"collection_id": str(collection.id), "bytes": len(upload.data)},
            )
            return document

    async def list(
        self,
        principal: Principal,
        *,
        limit: int,
        offset: int,
        collection_id: uuid.UUID | None,
        status: str | None,
    ) -> tuple[list[Document], int]:
        principal.require_scope(Scope.RAG_READ)
        async with self.db.tenant(principal.require_tenant()) as session:
            return await documents_repo.list_page(
                session, limit=limit, offset=offset, collection_id=collection_id, status=status
            )

    async def get(self, principal: Principal, document_id: uuid.UUID) -> Document:
        principal.require_scope(Scope.RAG_READ)
        async with self.db.tenant(principal.require_tenant()) as session:
            document = await documents_repo.get(session, document_id)
        if document is None:
            raise NotFound("Document not found.", code="document_not_found")
        return document

    async def delete(self, principal: Principal, document_id: uuid.UUID) -> None:
        principal.require_scope(Scope.RAG_WRITE)
        tenant_id = principal.require_tenant()
        async with self.db.tenant(tenant_id) as session:
            document = await documents_repo.get(session, document_id)
            if document is None:
                raise NotFound("Document not found.", code="document_not_found")
            await documents_repo.remove(session, document)
            await audit.record(
                session,
                principal,
                "document.delete",
                tenant_id=tenant_id,
                target_type="document",
                target_id=document_id,
                details={"title": document.title},
            )
        await self.store.delete(document.storage_key)

    async def stats(self, principal: Principal) -> Stats:
        principal.require_scope(Scope.RAG_READ)
        async with self.db.tenant(principal.require_tenant()) as session:
            totals = await documents_repo.totals_by_status(session)
            collections = await collections_repo.count(session)
            chunks = await chunks_repo.count(session)
        return Stats(
            collections=collections,
            documents=sum(t.documents for t in totals),
            by_status={t.status: t.documents for t in totals},
            chunks=chunks,
            tokens=sum(t.tokens for t in totals),
            bytes=sum(t.bytes for t in totals),
        )
