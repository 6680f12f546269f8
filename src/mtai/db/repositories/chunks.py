"""Chunks (rag_chunks): replacing a document's chunks, and vector / keyword / hybrid search.

Search is one statement whatever the mode: hybrid fuses the vector and the keyword candidate
lists with reciprocal rank fusion inside PostgreSQL, so it costs one round trip.
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

# Reciprocal rank fusion's damping constant. Cormack et al. (2009) use 60; on the shipped
# evaluation set 10 ranked better on every metric (docs/rag.md has both measurements).
RRF_K = 10

_INSERT = text(
    "INSERT INTO rag_chunks (id, tenant_id, collection_id, document_id, ordinal, text, heading, "
    "page, tokens, metadata, embedding_dim, embedding) VALUES (:id, :tenant_id, :collection_id, "
    ":document_id, :ordinal, :text, :heading, :page, :tokens, CAST(:metadata AS jsonb), :dim, "
    "CAST(:embedding AS vector))"
)
_DELETE = text("DELETE FROM rag_chunks WHERE document_id = :document_id")


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


@dataclass(frozen=True)
class Hit(Passage):
    score: float
    vector_rank: int | None
    keyword_rank: int | None


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


def _filters(document_ids: bool, metadata: bool) -> str:
    clauses = ["collection_id = ANY(:collection_ids)"]
    if document_ids:
        clauses.append("document_id = ANY(:document_ids)")
    if metadata:
        clauses.append("metadata @> :metadata")
    return " AND ".join(clauses)


def _vector_cte(dim: int, where: str) -> str:
    if dim not in INDEXED_DIMENSIONS:
        # No HNSW index for this size: the same ordering, computed exactly.
        distance = "embedding <=> CAST(:query_vector AS vector)"
    else:
        # The expression and the embedding_dim predicate must match the partial index.
        distance = f"(embedding::vector({dim})) <=> CAST(:query_vector AS vector({dim}))"
    return (
        "vec AS (SELECT id, row_number() OVER (ORDER BY distance, id) AS rank, "
        "1 - distance AS score FROM ("
        f"SELECT id, {distance} AS distance FROM rag_chunks "
        f"WHERE embedding_dim = {dim} AND {where} ORDER BY distance LIMIT :candidates) v)"
    )


def _keyword_cte(document_ids: bool, metadata: bool) -> str:
    # The keyword candidates come from a function that reads rag_chunks as its owner, through
    # the GIN index, filtered on the transaction's tenant (migration 0005 says why).
    documents = "CAST(:document_ids AS uuid[])" if document_ids else "NULL::uuid[]"
    contains = "CAST(:metadata AS jsonb)" if metadata else "NULL::jsonb"
    return (
        "kw AS (SELECT id, row_number() OVER (ORDER BY score DESC, id) AS rank, score FROM "
        "mtai_keyword_candidates(CAST(:collection_ids AS uuid[]), CAST(:query_text AS text), "
        f"CAST(:candidates AS integer), {documents}, {contains}) k)"
    )


def _statement(mode: str, dim: int, document_ids: bool, metadata: bool) -> str:
    where = _filters(document_ids, metadata)
    keyword = _keyword_cte(document_ids, metadata)
    if mode == "vector":
        ctes = [_vector_cte(dim, where)]
        fused = "SELECT id, score, rank AS vector_rank, NULL::bigint AS keyword_rank FROM vec"
    elif mode == "keyword":
        ctes = [keyword]
        fused = "SELECT id, score, NULL::bigint AS vector_rank, rank AS keyword_rank FROM kw"
    else:
        ctes = [_vector_cte(dim, where), keyword]
        fused = (
            "SELECT coalesce(vec.id, kw.id) AS id, "
            f"coalesce(1.0 / ({RRF_K} + vec.rank), 0) + coalesce(1.0 / ({RRF_K} + kw.rank), 0) "
            "AS score, vec.rank AS vector_rank, kw.rank AS keyword_rank "
            "FROM vec FULL OUTER JOIN kw ON vec.id = kw.id"
        )
    # The winners are picked before the join, so that the chunks and documents are fetched
    # by primary key for `limit` rows (joining all candidates made the planner scan the table).
    return (
        f"WITH {', '.join(ctes)}, fused AS ({fused}), "
        "top AS (SELECT * FROM fused ORDER BY score DESC, id LIMIT :limit) "
        "SELECT c.id, c.document_id, c.collection_id, d.title, c.text, c.heading, c.page, "
        "c.ordinal, c.metadata, f.score, f.vector_rank, f.keyword_rank "
        "FROM top f JOIN rag_chunks c ON c.id = f.id "
        "JOIN rag_documents d ON d.id = c.document_id "
        "ORDER BY f.score DESC, c.id"
    )


async def search(
    session: AsyncSession,
    *,
    mode: str,
    dim: int,
    query_vector: npt.NDArray[np.float32] | None,
    query_text: str,
    collection_ids: Sequence[uuid.UUID],
    document_ids: Sequence[uuid.UUID] | None,
    metadata: dict[str, Any] | None,
    limit: int,
    candidates: int,
) -> list[Hit]:
    statement = text(_statement(mode, dim, document_ids is not None, bool(metadata))).bindparams(
        bindparam("collection_ids", type_=ARRAY(UUID(as_uuid=True)))
    )
    params: dict[str, Any] = {
        "collection_ids": list(collection_ids),
        "limit": limit,
        "candidates": candidates,
    }
    if mode != "keyword":
        assert query_vector is not None
        params["query_vector"] = vector_literal(query_vector)
    if mode != "vector":
        params["query_text"] = query_text
    if document_ids is not None:
        statement = statement.bindparams(bindparam("document_ids", type_=ARRAY(UUID(as_uuid=True))))
        params["document_ids"] = list(document_ids)
    if metadata:
        statement = statement.bindparams(bindparam("metadata", type_=JSONB))
        params["metadata"] = metadata
    rows = (await session.execute(statement, params)).all()
    return [
        Hit(
            chunk_id=r[0],
            document_id=r[1],
            collection_id=r[2],
            title=r[3],
            text=r[4],
            heading=r[5],
            page=r[6],
            ordinal=r[7],
            metadata=r[8],
            score=float(r[9]),
            vector_rank=r[10],
            keyword_rank=r[11],
        )
        for r in rows
    ]


_PASSAGE = text(
    "SELECT c.id, c.document_id, c.collection_id, d.title, c.text, c.heading, c.page, "
    "c.ordinal, c.metadata FROM rag_chunks c JOIN rag_documents d ON d.id = c.document_id "
    "WHERE c.id = :chunk_id"
).bindparams(bindparam("chunk_id", type_=UUID(as_uuid=True)))


async def passage(session: AsyncSession, chunk_id: uuid.UUID) -> Passage | None:
    row = (await session.execute(_PASSAGE, {"chunk_id": chunk_id})).first()
    return Passage(*row) if row is not None else None


async def count(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT count(*) FROM rag_chunks"))).scalar_one())
