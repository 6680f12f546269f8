"""Knowledge bases (collections): a tenant's named sets of documents, each with one embedder.

Changing a knowledge base's embedding model re-embeds every document in it: vectors of two
models are not comparable, so a collection never mixes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.engine import Database
from mtai.db.models import Collection
from mtai.db.repositories import chunks as chunks_repo
from mtai.db.repositories import collections as collections_repo
from mtai.db.repositories import documents as documents_repo
from mtai.errors import Conflict, InvalidInput, NotFound
from mtai.providers.embeddings.registry import EmbedderRegistry
from mtai.providers.storage.base import ObjectStore
from mtai.services import audit
from mtai.services.metering import Meter
from mtai.services.principal import Principal, Scope
from mtai.services.rank_fusion import Weights

DEFAULT_NAME = "default"
Enqueue = Callable[[uuid.UUID, uuid.UUID], Awaitable[None]]


def actor_label(principal: Principal) -> str:
    actor_type, actor_id = principal.actor
    return f"{actor_type}:{actor_id}"


# PostgreSQL's own text search configurations (15 and later): a knowledge base's language.
# `simple` neither stems nor drops stop words: for mixed languages, codes and names.
LANGUAGES = (
    "simple", "arabic", "danish", "dutch", "english", "finnish", "french", "german", "greek",
    "hungarian", "indonesian", "irish", "italian", "lithuanian", "nepali", "norwegian",
    "portuguese", "romanian", "russian", "spanish", "swedish", "tamil", "turkish",
)  # fmt: skip
DEFAULT_LANGUAGE = "english"


def _check_language(language: str | None) -> None:
    if language is not None and language not in LANGUAGES:
        raise InvalidInput(
            f"Unknown language '{language}'; choose one of: {', '.join(LANGUAGES)} (simple for "
            "mixed content).",
            code="unknown_language",
        )


def _described(weights: Weights | None) -> str:
    return (
        "default" if weights is None else f"vector {weights.vector:g}, keyword {weights.keyword:g}"
    )


def parse_ref(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


@dataclass(frozen=True)
class Change:
    collection: Collection
    reembedding: int  # documents queued again because the embedding model changed


class KnowledgeBaseService:
    def __init__(
        self,
        db: Database,
        embedders: EmbedderRegistry,
        store: ObjectStore,
        enqueue: Enqueue,
        *,
        max_per_tenant: int,
        meter: Meter,
        can_rerank: bool = False,
    ) -> None:
        """`can_rerank`: the platform has a reranker, so knowledge bases may turn it on."""
        self.meter = meter
        self.can_rerank = can_rerank
        self.db = db
        self.embedders = embedders
        self.store = store
        self.enqueue = enqueue
        self.max_per_tenant = max_per_tenant

    def _check_rerank(self, rerank: bool | None) -> None:
        if rerank and not self.can_rerank:
            raise InvalidInput(
                "This platform has no reranker, so a knowledge base cannot turn reranking on: "
                "ask the operator to set MTAI_RERANK_PROVIDER (docs/rag.md).",
                code="reranker_unavailable",
            )

    def _model(self, name: str | None) -> tuple[str, int]:
        embedder = self.embedders.get(name or self.embedders.default_name)
        return embedder.name, embedder.dimension

    async def _add(
        self,
        session: AsyncSession,
        principal: Principal,
        *,
        name: str,
        description: str,
        embedding_model: str | None,
        weights: Weights | None = None,
        rerank: bool = False,
        language: str = DEFAULT_LANGUAGE,
    ) -> Collection:
        tenant_id = principal.require_tenant()
        self._check_rerank(rerank)
        _check_language(language)
        if await collections_repo.count(session) >= self.max_per_tenant:
            raise Conflict(
                f"This tenant already has {self.max_per_tenant} knowledge bases, the most allowed; "
                "delete one first.",
                code="collection_limit",
            )
        model, dim = self._model(embedding_model)
        collection = Collection(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            name=name,
            description=description,
            embedding_model=model,
            embedding_dim=dim,
            vector_weight=weights.vector if weights else None,
            keyword_weight=weights.keyword if weights else None,
            rerank=rerank,
            language=language,
            created_by=actor_label(principal),
        )
        try:
            async with session.begin_nested():
                await collections_repo.add(session, collection)
        except IntegrityError as exc:
            raise Conflict(
                f"A knowledge base named '{name}' already exists; choose another name.",
                code="collection_exists",
            ) from exc
        await audit.record(
            session,
            principal,
            "collection.create",
            tenant_id=tenant_id,
            target_type="collection",
            target_id=collection.id,
            details={
                "name": name,
                "embedding_model": model,
                "weights": _described(weights),
                "rerank": str(rerank).lower(),
                "language": language,
            },
        )
        return collection

    async def create(
        self,
        principal: Principal,
        *,
        name: str,
        description: str,
        embedding_model: str | None,
        weights: Weights | None = None,
        rerank: bool = False,
        language: str = DEFAULT_LANGUAGE,
    ) -> Collection:
        principal.require_scope(Scope.RAG_WRITE)
        async with self.db.tenant(principal.require_tenant()) as session:
            return await self._add(
                session,
                principal,
                name=name,
                description=description,
                embedding_model=embedding_model,
                weights=weights,
                rerank=rerank,
                language=language,
            )

    async def list(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[list[Collection], int]:
        principal.require_scope(Scope.RAG_READ)
        async with self.db.tenant(principal.require_tenant()) as session:
            return await collections_repo.list_page(session, limit=limit, offset=offset)

    async def get(self, principal: Principal, collection_id: uuid.UUID) -> Collection:
        principal.require_scope(Scope.RAG_READ)
        async with self.db.tenant(principal.require_tenant()) as session:
            return await self._found(session, collection_id)

    @staticmethod
    async def _found(session: AsyncSession, collection_id: uuid.UUID) -> Collection:
        collection = await collections_repo.get(session, collection_id)
        if collection is None:
            raise NotFound("Knowledge base not found.", code="collection_not_found")
        return collection

    async def for_upload(
        self, session: AsyncSession, principal: Principal, ref: str | None
    ) -> Collection:
        """The collection an upload goes to: by id or name; none given: 'default', made if new."""
        if ref is not None and (collection_id := parse_ref(ref)) is not None:
            return await self._found(session, collection_id)
        name = (ref or DEFAULT_NAME).strip()
        found = await collections_repo.by_name(session, name)
        if found is not None:
            return found
        if ref is not None and name != DEFAULT_NAME:
            raise NotFound(
                f"No knowledge base is named '{name}'. Create it first "
                "(POST /api/v1/rag/collections) or leave 'collection' out to use 'default'.",
                code="collection_not_found",
            )
        try:
            return await self._add(
                session, principal, name=DEFAULT_NAME, description="", embedding_model=None
            )
        except Conflict:
            # Another first upload created it a moment ago.
            created = await collections_repo.by_name(session, DEFAULT_NAME)
            if created is None:
                raise
            return created

    async def update(
        self,
        principal: Principal,
        collection_id: uuid.UUID,
        *,
        name: str | None,
        description: str | None,
        embedding_model: str | None,
        weights: Weights | None = None,
        reset_weights: bool = False,
        rerank: bool | None = None,
        language: str | None = None,
    ) -> Change:
        """None leaves a field as it is; `reset_weights` gives the platform's weights back."""
        principal.require_scope(Scope.RAG_WRITE)
        self._check_rerank(rerank)
        _check_language(language)
        tenant_id = principal.require_tenant()
        if embedding_model is not None:
            # Re-embedding spends compute: admitted like any metered request (the documents'
            # embedding is charged as each one is processed again).
            await self.meter.admit_request(principal)
        requeued: list[uuid.UUID] = []
        async with self.db.tenant(tenant_id) as session:
            collection = await self._found(session, collection_id)
            changes: dict[str, str] = {}
            if name is not None and name != collection.name:
                clash = await collections_repo.by_name(session, name)
                if clash is not None and clash.id != collection.id:
                    raise Conflict(
                        f"A knowledge base named '{name}' already exists; choose another name.",
                        code="collection_exists",
                    )
                collection.name = changes["name"] = name
            if description is not None:
                collection.description = description
            if weights is not None or reset_weights:
                collection.vector_weight = weights.vector if weights else None
                collection.keyword_weight = weights.keyword if weights else None
                changes["weights"] = _described(weights)
            if rerank is not None and rerank != collection.rerank:
                collection.rerank = rerank
                changes["rerank"] = str(rerank).lower()
            if language is not None and language != collection.language:
                collection.language = changes["language"] = language
            if embedding_model is not None:
                model, dim = self._model(embedding_model)
                if model != collection.embedding_model:
                    collection.embedding_model = changes["embedding_model"] = model
                    collection.embedding_dim = dim
                    requeued = await documents_repo.requeue_collection(session, collection.id)
            await collections_repo.save(session, collection)
            if "language" in changes:
                # Reparsed at once, in this transaction: a search never mixes two languages.
                await chunks_repo.follow_language(session, collection.id)
            await audit.record(
                session,
                principal,
                "collection.update",
                tenant_id=tenant_id,
                target_type="collection",
                target_id=collection.id,
                details={**changes, "reembedding": len(requeued)},
            )
        for document_id in requeued:
            await self.enqueue(tenant_id, document_id)
        return Change(collection, len(requeued))

    async def delete(self, principal: Principal, collection_id: uuid.UUID) -> None:
        principal.require_scope(Scope.RAG_WRITE)
        tenant_id = principal.require_tenant()
        async with self.db.tenant(tenant_id) as session:
            collection = await self._found(session, collection_id)
            keys = [
                d.storage_key for d in await documents_repo.in_collection(session, collection.id)
            ]
            await collections_repo.remove(session, collection)
            await audit.record(
                session,
                principal,
                "collection.delete",
                tenant_id=tenant_id,
                target_type="collection",
                target_id=collection_id,
                details={"name": collection.name, "documents": len(keys)},
            )
        # After the commit: a failed delete of the rows must not lose the originals.
        for key in keys:
            await self.store.delete(key)
