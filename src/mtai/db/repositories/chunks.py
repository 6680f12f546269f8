"""Chunks (rag_chunks): replacing a document's chunks, the vector and keyword candidate lists
that search ranks and fuses (services/retrieval.py), and the passages it returns.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.vectors import INDEXED_DIMENSIONS

# A chunk takes its knowledge base's language, which its stored tsvector is parsed with.
_INSERT = text(
    "INSERT INTO rag_chunks (id, tenant_id, collection_id, document_id, ordinal, text, heading, "
    "page, tokens, metadata, embedding_dim, embedding, language) VALUES (:id, :tenant_id, "
    ":collection_id, :document_id, :ordinal, :text, :heading, :page, :tokens, "
    "CAST(:metadata AS jsonb), :dim, CAST(:embedding AS vector), "
    "(SELECT k.language FROM rag_collections k WHERE k.id = :collection_id))"
)
_DELETE = text("DELETE FROM rag_chunks WHERE document_id = :document_id")
# Taken first by a writer of a document's chunks: a change of language (which updates this row,
# then reparses the knowledge base's chunks) either waits for the new chunks to commit, so that
# it reparses them too, or commits before they read the language. First, so that both take
# this row before the chunk triggers' per-knowledge-base lock (no deadlock).
_SHARE_COLLECTION = text("SELECT 1 FROM rag_collections WHERE id = :collection_id FOR SHARE")
_RELANGUAGE = text(
    "UPDATE rag_chunks SET language = k.language FROM rag_collections k "
    "WHERE k.id = :collection_id AND rag_chunks.collection_id = k.id "
    "AND rag_chunks.language <> k.language"
)


@dataclass(frozen=True)
class NewChunk:
    ordinal: int
    text: str
    heading: str
    page: int | None
    tokens: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Passage:
    """A chunk with its document's title: what a search hit or a citation points at."""

    chunk_id: uuid.UUID
    document_id: uuid.UUID
    collection_id: uuid.UUID
    title: str
    text: str
    heading: str
    page: int | None
    ordinal: int
    metadata: dict[str, Any]


def chunk_id(document_id: uuid.UUID, ordinal: int) -> uuid.UUID:
    """Stable across re-runs, so a citation keeps pointing at the same passage."""
    return uuid.uuid5(document_id, str(ordinal))


def vector_literal(vector: npt.NDArray[np.float32]) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


async def replace(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    collection_id: uuid.UUID,
    document_id: uuid.UUID,
    chunks: Sequence[NewChunk],
    vectors: npt.NDArray[np.float32],
) -> None:
    """The document's chunks become exactly these (a re-run never duplicates)."""
    await session.execute(_SHARE_COLLECTION, {"collection_id": collection_id})
    await session.execute(_DELETE, {"document_id": document_id})
    if not chunks:
        return
    dim = int(vectors.shape[1])
    await session.execute(
        _INSERT,
        [
            {
                "id": chunk_id(document_id, c.ordinal),
                "tenant_id": tenant_id,
                "collection_id": collection_id,
                "document_id": document_id,
                "ordinal": c.ordinal,
                "text": c.text,
                "heading": c.heading,
                "page": c.page,
                "tokens": c.tokens,
                "metadata": json.dumps(c.metadata),
                "dim": dim,
                "embedding": vector_literal(vector),
            }
            for c, vector in zip(chunks, vectors, strict=True)
        ],
    )


@dataclass(frozen=True)
class Candidate:
    """One entry of a ranked candidate list: vector (cosine similarity) or keyword (its rank)."""

    chunk_id: uuid.UUID
    score: float


def _filters(document_ids: bool, metadata: bool) -> str:
    clauses = ["collection_id = ANY(:collection_ids)"]
    if document_ids:
        clauses.append("document_id = ANY(:document_ids)")
    if metadata:
        clauses.append("metadata @> :metadata")
    return " AND ".join(clauses)


def _vector_statement(dim: int, document_ids: bool, metadata: bool) -> str:
    if dim not in INDEXED_DIMENSIONS:
        # No HNSW index for this size: the same ordering, computed exactly.
        distance = "embedding <=> CAST(:query_vector AS vector)"
    else:
        # The expression and the embedding_dim predicate must match the partial index, which
        # holds half-precision vectors (migration 0008).
        distance = f"(embedding::halfvec({dim})) <=> CAST(:query_vector AS halfvec({dim}))"
    return (
        f"SELECT id, 1 - distance FROM (SELECT id, {distance} AS distance FROM rag_chunks "
        f"WHERE embedding_dim = {dim} AND {_filters(document_ids, metadata)} "
        "ORDER BY distance LIMIT :candidates) v ORDER BY distance, id"
    )


def _keyword_statement(document_ids: bool, metadata: bool) -> str:
    # The keyword candidates come from a function that reads rag_chunks as its owner, through
    # the GIN index, filtered on the transaction's tenant (migrations 0005 and 0007 say why).
    documents = "CAST(:document_ids AS uuid[])" if document_ids else "NULL::uuid[]"
    contains = "CAST(:metadata AS jsonb)" if metadata else "NULL::jsonb"
    return (
        "SELECT id, score FROM mtai_keyword_candidates(CAST(:collection_ids AS uuid[]), "
        f"CAST(:query_text AS text), CAST(:candidates AS integer), {documents}, {contains}, "
        "CAST(:k1 AS real), CAST(:b AS real), CAST(:language AS regconfig)) "
        "ORDER BY score DESC, id"
    )


async def _candidates(
    session: AsyncSession,
    sql: str,
    params: dict[str, Any],
    *,
    collection_ids: Sequence[uuid.UUID],
    document_ids: Sequence[uuid.UUID] | None,
    metadata: dict[str, Any] | None,
    candidates: int,
) -> list[Candidate]:
    statement = text(sql).bindparams(bindparam("collection_ids", type_=ARRAY(UUID(as_uuid=True))))
    params |= {"collection_ids": list(collection_ids), "candidates": candidates}
    if document_ids is not None:
        statement = statement.bindparams(bindparam("document_ids", type_=ARRAY(UUID(as_uuid=True))))
        params["document_ids"] = list(document_ids)
    if metadata:
        statement = statement.bindparams(bindparam("metadata", type_=JSONB))
        params["metadata"] = metadata
    rows = (await session.execute(statement, params)).all()
    return [Candidate(r[0], float(r[1])) for r in rows]


# Forces the HNSW walk (no plan may sort instead) for the rest of the transaction when the
# knowledge bases are big enough for it to win; migration 0007 says why and when. Not with a
# document or metadata filter: those are usually selective, and the walk would pass over most
# of the graph to find a few chunks that an index on the filter finds directly.
_CHOOSE_WALK = text(
    "SELECT set_config('enable_sort', CASE WHEN :unfiltered AND "
    "mtai_vector_walk(:collection_ids) THEN 'off' ELSE 'on' END, true)"
).bindparams(bindparam("collection_ids", type_=ARRAY(UUID(as_uuid=True))))


async def vector_candidates(
    session: AsyncSession,
    *,
    dim: int,
    query_vector: npt.NDArray[np.float32],
    collection_ids: Sequence[uuid.UUID],
    document_ids: Sequence[uuid.UUID] | None,
    metadata: dict[str, Any] | None,
    candidates: int,
) -> list[Candidate]:
    """The nearest chunks by cosine distance (HNSW), nearest first."""
    if dim in INDEXED_DIMENSIONS:
        unfiltered = document_ids is None and not metadata
        await session.execute(
            _CHOOSE_WALK, {"collection_ids": list(collection_ids), "unfiltered": unfiltered}
        )
    return await _candidates(
        session,
        _vector_statement(dim, document_ids is not None, bool(metadata)),
        {"query_vector": vector_literal(query_vector)},
        collection_ids=collection_ids,
        document_ids=document_ids,
        metadata=metadata,
        candidates=candidates,
    )


async def keyword_candidates(
    session: AsyncSession,
    *,
    query_text: str,
    collection_ids: Sequence[uuid.UUID],
    document_ids: Sequence[uuid.UUID] | None,
    metadata: dict[str, Any] | None,
    candidates: int,
    bm25: tuple[float, float] | None,
    language: str,
) -> list[Candidate]:
    """The chunks full-text search ranks highest over any of the query's words, parsed in
    `language` (the knowledge bases'): by BM25 with `bm25` = (k1, b), or by ts_rank when it is
    None (migrations 0015 and 0017)."""
    k1, b = bm25 if bm25 is not None else (None, None)
    return await _candidates(
        session,
        _keyword_statement(document_ids is not None, bool(metadata)),
        {"query_text": query_text, "k1": k1, "b": b, "language": language},
        collection_ids=collection_ids,
        document_ids=document_ids,
        metadata=metadata,
        candidates=candidates,
    )


_PASSAGES = text(
    "SELECT c.id, c.document_id, c.collection_id, d.title, c.text, c.heading, c.page, "
    "c.ordinal, c.metadata FROM rag_chunks c JOIN rag_documents d ON d.id = c.document_id "
    "WHERE c.id = ANY(:chunk_ids)"
).bindparams(bindparam("chunk_ids", type_=ARRAY(UUID(as_uuid=True))))


async def passages(
    session: AsyncSession, chunk_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Passage]:
    """The chunks of `chunk_ids` that still exist, by id, fetched by primary key."""
    if not chunk_ids:
        return {}
    rows = (await session.execute(_PASSAGES, {"chunk_ids": list(chunk_ids)})).all()
    return {row[0]: Passage(*row) for row in rows}


async def passage(session: AsyncSession, chunk_id: uuid.UUID) -> Passage | None:
    return (await passages(session, [chunk_id])).get(chunk_id)


async def count(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT count(*) FROM rag_chunks"))).scalar_one())


async def follow_language(session: AsyncSession, collection_id: uuid.UUID) -> int:
    """The knowledge base's chunks parsed again in its (changed) language; how many changed.
    Their tsvectors are recomputed and the term counts follow (the chunk triggers)."""
    result = await session.execute(_RELANGUAGE, {"collection_id": collection_id})
    return int(getattr(result, "rowcount", 0) or 0)
