"""Search latency (vector, keyword, hybrid) at 10k and 100k chunks, HNSW recall, query plans.

The chunks are written straight into rag_chunks as the database owner (COPY), with random
unit vectors and text made of the corpus's sentences, so full-text search meets real words.
Latency is measured through the product's search path (`Retriever.search`, which embeds the
query with MiniLM), and again with the query's embedding given, so that only the database
work is timed.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pgvector.asyncpg import register_vector
from sqlalchemy import event, text

from bench.common import (
    Json,
    latency_summary,
    load_corpus,
    load_queries,
    new_tenant,
    owner_connection,
    runtime_for,
    table,
    target,
)
from mtai.db.repositories import chunks as chunks_repo
from mtai.db.vectors import HNSW_EF_SEARCH
from mtai.runtime import Runtime
from mtai.services.principal import Principal
from mtai.services.retrieval import CANDIDATES, Hit, SearchMode, SearchQuery

DIM = 384
HNSW_INDEX = f"rag_chunks_hnsw_{DIM}"
GIN_INDEX = "rag_chunks_tsv"
KEYWORD_FUNCTION = "mtai_keyword_candidates"
CHUNKS_PER_DOCUMENT = 10
CHUNK_CHARS = 800  # ~180 MiniLM tokens, what the chunker makes of this corpus on average
LIMIT = 10
SEED = 20261129
TARGET_P95_MS = 25.0
TARGET_RECALL = 0.95
MODES = (SearchMode.VECTOR, SearchMode.KEYWORD, SearchMode.HYBRID)
# Only for building the index: the embedded server's default (64MB) cannot hold a 100k graph.
BUILD_MAINTENANCE_WORK_MEM = "1GB"
PREWARMED = (HNSW_INDEX, GIN_INDEX, "rag_chunks")

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SearchOptions:
    sizes: tuple[int, ...] = (10_000, 100_000)
    queries: int = 200
    warmup: int = 20
    recall_queries: int = 100
    ef_search: tuple[int, ...] = (HNSW_EF_SEARCH, 100, 200, 400)  # the first: the app's setting
    # Recall again at the largest size with embedding-like vectors and real query embeddings.
    embedding_like_recall: bool = True


@dataclass(frozen=True)
class Target:
    principal: Principal
    tenant_id: uuid.UUID
    collection_id: uuid.UUID


# --- data ----------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n\s*\n")
_WORD = re.compile(r"[A-Za-z][A-Za-z_]+")


def corpus_sentences() -> list[str]:
    sentences = []
    for doc in load_corpus():
        for part in _SENTENCE_END.split(doc.text):
            flat = " ".join(part.split())
            if len(flat.split()) >= 4:
                sentences.append(flat)
    return sentences


def search_queries(count: int, rng: np.random.Generator) -> list[str]:
    """The eval set's questions, then phrases of 2-6 words cut from the corpus's sentences."""
    queries = load_queries()
    words = [_WORD.findall(s) for s in corpus_sentences()]
    words = [w for w in words if len(w) >= 6]
    while len(queries) < count:
        sentence = words[int(rng.integers(len(words)))]
        size = int(rng.integers(2, 7))
        start = int(rng.integers(0, len(sentence) - size + 1))
        queries.append(" ".join(sentence[start : start + size]))
    order = rng.permutation(len(queries))
    return [queries[i] for i in order[:count]]


def _unit_vectors(rng: np.random.Generator, n: int) -> Vector:
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _compose(rng: np.random.Generator, sentences: Sequence[str], n: int) -> list[list[int]]:
    """Each chunk as the indexes of the random sentences its ~CHUNK_CHARS of text are made of."""
    picks = iter(rng.integers(len(sentences), size=n * 40).tolist())
    chunks = []
    for _ in range(n):
        parts: list[int] = []
        size = 0
        while size < CHUNK_CHARS:
            index = next(picks)
            parts.append(index)
            size += len(sentences[index]) + 1
        chunks.append(parts)
    return chunks


def _sentence_means(embeddings: Vector, chunks: list[list[int]]) -> Vector:
    """Embedding-like vectors: each chunk's is the normalised mean of its sentences' MiniLM
    embeddings, so the vectors lie where the model's do and match the chunk's own text."""
    vectors = np.empty((len(chunks), DIM), dtype=np.float32)
    for i, parts in enumerate(chunks):
        vectors[i] = embeddings[parts].sum(axis=0)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


async def populate(
    database_url: str,
    where: Target,
    n: int,
    rng: np.random.Generator,
    sentence_embeddings: Vector | None = None,
) -> Json:
    """Replace the tenant's chunks by `n` synthetic ones; rebuild the search indexes. Vectors:
    random unit vectors, or means of the sentences' embeddings when those are given."""
    sentences = corpus_sentences()
    titles = [d.title for d in load_corpus()]
    conn = await owner_connection(database_url)
    try:
        await register_vector(conn)
        await conn.execute("TRUNCATE rag_chunks, rag_documents")
        definitions = dict(
            await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'rag_chunks' "
                "AND indexname = ANY($1::text[])",
                [HNSW_INDEX, GIN_INDEX],
            )
        )
        if set(definitions) != {HNSW_INDEX, GIN_INDEX}:
            raise RuntimeError(f"expected indexes missing: {sorted(definitions)}")
        for name in definitions:
            await conn.execute(f"DROP INDEX {name}")

        started = time.perf_counter()
        documents = (n + CHUNKS_PER_DOCUMENT - 1) // CHUNKS_PER_DOCUMENT
        doc_ids = [uuid.uuid4() for _ in range(documents)]
        doc_titles = [titles[int(i)] for i in rng.integers(len(titles), size=documents)]
        composed = _compose(rng, sentences, n)
        vectors = (
            _unit_vectors(rng, n)
            if sentence_embeddings is None
            else _sentence_means(sentence_embeddings, composed)
        )
        chunk_rows = []
        for i, parts in enumerate(composed):
            body = " ".join(sentences[j] for j in parts)
            document = i // CHUNKS_PER_DOCUMENT
            ordinal = i % CHUNKS_PER_DOCUMENT
            chunk_rows.append(
                (
                    chunks_repo.chunk_id(doc_ids[document], ordinal),
                    where.tenant_id,
                    where.collection_id,
                    doc_ids[document],
                    ordinal,
                    body,
                    doc_titles[document],
                    None,
                    len(body) // 4,
                    "{}",
                    DIM,
                    vectors[i],
                )
            )
        doc_rows = [
            (
                doc_id,
                where.tenant_id,
                where.collection_id,
                f"{doc_titles[i]} ({i})",
                CHUNKS_PER_DOCUMENT * CHUNK_CHARS,
                hashlib.sha256(doc_id.bytes).hexdigest(),
                f"bench/{doc_id}",
                "ready",
                1.0,
                CHUNKS_PER_DOCUMENT,
                CHUNKS_PER_DOCUMENT * CHUNK_CHARS // 4,
                "all-MiniLM-L6-v2",
                "bench",
            )
            for i, doc_id in enumerate(doc_ids)
        ]
        generated = time.perf_counter() - started

        started = time.perf_counter()
        await conn.copy_records_to_table(
            "rag_documents",
            records=doc_rows,
            columns=[
                "id",
                "tenant_id",
                "collection_id",
                "title",
                "size_bytes",
                "sha256",
                "storage_key",
                "status",
                "progress",
                "chunk_count",
                "token_count",
                "embedding_model",
                "created_by",
            ],
        )
        await conn.copy_records_to_table(
            "rag_chunks",
            records=chunk_rows,
            columns=[
                "id",
                "tenant_id",
                "collection_id",
                "document_id",
                "ordinal",
                "text",
                "heading",
                "page",
                "tokens",
                "metadata",
                "embedding_dim",
                "embedding",
            ],
        )
        copied = time.perf_counter() - started

        await conn.execute(f"SET maintenance_work_mem = '{BUILD_MAINTENANCE_WORK_MEM}'")
        started = time.perf_counter()
        await conn.execute(definitions[GIN_INDEX])
        gin = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute(definitions[HNSW_INDEX])
        hnsw = time.perf_counter() - started
        await conn.execute("RESET maintenance_work_mem")
        started = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) rag_documents")
        await conn.execute("VACUUM (ANALYZE) rag_chunks")
        vacuumed = time.perf_counter() - started
        # A server that has been answering searches holds the graph and the hot table pages in
        # shared_buffers; reading them in now times that steady state, not the first walks.
        started = time.perf_counter()
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        for relation in PREWARMED:
            await conn.execute("SELECT pg_prewarm($1::regclass)", relation)
        prewarmed = time.perf_counter() - started
        sizes = await conn.fetchrow(
            "SELECT pg_table_size('rag_chunks') AS heap, "
            "pg_relation_size($1::regclass) AS hnsw, pg_relation_size($2::regclass) AS gin, "
            "current_setting('shared_buffers') AS shared_buffers",
            HNSW_INDEX,
            GIN_INDEX,
        )
        assert sizes is not None
    finally:
        await conn.close()
    mib = 1024 * 1024
    return {
        "chunks": n,
        "vectors": "random unit" if sentence_embeddings is None else "sentence-embedding means",
        "documents": documents,
        "generate_seconds": round(generated, 2),
        "copy_seconds": round(copied, 2),
        "gin_build_seconds": round(gin, 2),
        "hnsw_build_seconds": round(hnsw, 2),
        "vacuum_analyze_seconds": round(vacuumed, 2),
        "prewarm_seconds": round(prewarmed, 2),
        "shared_buffers": sizes["shared_buffers"],
        "table_mib": round(sizes["heap"] / mib, 1),
        "hnsw_mib": round(sizes["hnsw"] / mib, 1),
        "gin_mib": round(sizes["gin"] / mib, 1),
        "index_definitions": definitions,
    }


# --- measurements --------------------------------------------------------------------------


async def _sql_search(
    runtime: Runtime, where: Target, mode: SearchMode, query: str, vector: Vector | None
) -> list[Hit]:
    """The product's search with the query's embedding given: its database work alone."""
    embedded = None if vector is None else {runtime.settings.embedding_model: vector}
    return await runtime.retriever.search(
        where.principal, SearchQuery(query=query, limit=LIMIT, mode=mode), embedded=embedded
    )


async def latencies(
    runtime: Runtime,
    where: Target,
    queries: Sequence[str],
    vectors: Vector,
    options: SearchOptions,
) -> Json:
    """Per query, in turn: the query embedding alone, then each mode end to end and SQL only,
    so that whatever else the machine does weighs on every column alike."""
    embedder = runtime.embedders.get(runtime.settings.embedding_model)
    e2e: dict[SearchMode, list[float]] = {m: [] for m in MODES}
    sql: dict[SearchMode, list[float]] = {m: [] for m in MODES}
    embedding: list[float] = []
    empty = dict.fromkeys(MODES, 0)
    for i, query in enumerate(queries):
        timed = i >= options.warmup
        started = time.perf_counter()
        await embedder.aembed([query])
        if timed:
            embedding.append(time.perf_counter() - started)
        for mode in MODES:
            started = time.perf_counter()
            hits = await runtime.retriever.search(
                where.principal, SearchQuery(query=query, limit=LIMIT, mode=mode)
            )
            elapsed = time.perf_counter() - started
            if timed:
                e2e[mode].append(elapsed)
                empty[mode] += not hits
            vector = None if mode is SearchMode.KEYWORD else vectors[i]
            started = time.perf_counter()
            await _sql_search(runtime, where, mode, query, vector)
            if timed:
                sql[mode].append(time.perf_counter() - started)
    return {
        "end_to_end": {m.value: latency_summary(t) for m, t in e2e.items()},
        "sql_only": {m.value: latency_summary(t) for m, t in sql.items()},
        "query_embedding": latency_summary(embedding),
        "empty_results": {m.value: n for m, n in empty.items()},
    }


async def _vector_ids(
    runtime: Runtime, where: Target, vector: Vector, setting: str | None
) -> tuple[set[uuid.UUID], float]:
    """The vector search's top-10 ids (and its time), with one planner setting changed."""
    async with runtime.db.tenant(where.tenant_id) as session:
        if setting is not None:
            await session.execute(text(f"SET LOCAL {setting}"))
        started = time.perf_counter()
        found = await chunks_repo.vector_candidates(
            session,
            dim=DIM,
            query_vector=vector,
            collection_ids=[where.collection_id],
            document_ids=None,
            metadata=None,
            candidates=max(CANDIDATES, LIMIT),
        )
        elapsed = time.perf_counter() - started
    return {c.chunk_id for c in found[:LIMIT]}, elapsed


# The exact top 10, apart from the product's statement: that one turns sorting off for its
# transaction when the knowledge base is big (migration 0007), which with index scans off too
# would leave the planner free to walk the graph again.
_EXACT = text(
    "SELECT id FROM rag_chunks WHERE collection_id = :collection_id AND embedding_dim = 384 "
    "ORDER BY embedding <=> CAST(:query_vector AS vector), id LIMIT 10"
)


async def _exact_ids(runtime: Runtime, where: Target, vector: Vector) -> set[uuid.UUID]:
    assert (DIM, LIMIT) == (384, 10), "_EXACT spells them out"
    async with runtime.db.tenant(where.tenant_id) as session:
        await session.execute(text("SET LOCAL enable_indexscan = off"))
        rows = await session.execute(
            _EXACT,
            {
                "collection_id": where.collection_id,
                "query_vector": chunks_repo.vector_literal(vector),
            },
        )
        return {row[0] for row in rows}


async def recall(runtime: Runtime, where: Target, vectors: Vector, options: SearchOptions) -> Json:
    """Top-10 of the vector search (HNSW) against the exact top-10 (a sequential scan), at the
    app's ef_search and at the others of `options.ef_search`."""
    truths = []
    for vector in vectors:
        truth = await _exact_ids(runtime, where, vector)
        assert len(truth) == LIMIT
        truths.append(truth)
    by_ef = []
    for ef in options.ef_search:
        found, timings = [], []
        setting = None if ef == HNSW_EF_SEARCH else f"hnsw.ef_search = {int(ef)}"
        for vector, truth in zip(vectors, truths, strict=True):
            ids, elapsed = await _vector_ids(runtime, where, vector, setting)
            found.append(len(truth & ids) / LIMIT)
            timings.append(elapsed)
        by_ef.append(
            {
                "ef_search": ef,
                "product_setting": ef == HNSW_EF_SEARCH,
                "recall_at_10": round(float(np.mean(found)), 4),
                "min": round(float(np.min(found)), 2),
                "queries_below_0.9": sum(1 for f in found if f < 0.9),
                "latency": latency_summary(timings),
            }
        )
    product = next(r for r in by_ef if r["product_setting"])
    return {
        "queries": len(vectors),
        "recall_at_10": product["recall_at_10"],
        "by_ef_search": by_ef,
    }


async def keyword_matches(database_url: str, queries: Sequence[str]) -> Json:
    """How many chunks each query's keyword search matches (and so ranks), counted as the
    owner, whom RLS does not bind, so the GIN index answers."""
    conn = await owner_connection(database_url)
    try:
        counts = [int(await conn.fetchval(_COUNT_MATCHES, query)) for query in queries]
    finally:
        await conn.close()
    return {
        "counts": counts,
        "queries": len(counts),
        "p10": int(np.percentile(counts, 10)),
        "p50": int(np.percentile(counts, 50)),
        "p90": int(np.percentile(counts, 90)),
        "max": max(counts),
        "none": sum(1 for c in counts if c == 0),
    }


# Any of the query's words, as `mtai_keyword_candidates` ranks them, with $1 for the text.
_COUNT_MATCHES = (
    "SELECT count(*) FROM rag_chunks "
    "WHERE tsv @@ replace(plainto_tsquery('english', $1)::text, ' & ', ' | ')::tsquery"
)


VECTOR_STATEMENT = "vector candidates"
KEYWORD_STATEMENT = "keyword candidates"
PASSAGES_STATEMENT = "passages"
EXACT_STATEMENT = "vector candidates, exact (for recall)"
# Sent before the vector candidates: whether the walk is forced (migration 0007). Not explained,
# sent again before the vector statement's EXPLAIN, as the product does.
WALK_STATEMENT = "walk choice"


def _statement_kind(statement: str) -> str | None:
    if "mtai_vector_walk" in statement:
        return WALK_STATEMENT
    if KEYWORD_FUNCTION in statement:
        return KEYWORD_STATEMENT
    if "rag_chunks" not in statement:
        return None
    return VECTOR_STATEMENT if "<=>" in statement else PASSAGES_STATEMENT


class _Capture:
    """The search statements and their driver parameters, as the product sent them."""

    def __init__(self, runtime: Runtime) -> None:
        self.statements: dict[str, tuple[str, Sequence[Any]]] = {}

        @event.listens_for(runtime.db.engine.sync_engine, "before_cursor_execute")
        def _seen(
            _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
        ) -> None:
            kind = _statement_kind(statement)
            if kind is not None:
                self.statements[kind] = (statement, parameters)


async def _explain(
    runtime: Runtime,
    where: Target,
    sql: str,
    params: Sequence[Any],
    *,
    exact: bool = False,
    before: tuple[str, Sequence[Any]] | None = None,
) -> list[str]:
    async with runtime.db.tenant(where.tenant_id) as session:
        raw = await (await session.connection()).get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        if before is not None:
            await driver.fetch(before[0], *before[1])
        if exact:
            await driver.execute("SET LOCAL enable_indexscan = off")
            await driver.execute("SET LOCAL enable_sort = on")
        rows = await driver.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *params)
    return [r[0] for r in rows]


async def explain(
    runtime: Runtime, where: Target, capture: _Capture, query: str, vector: Vector
) -> dict[str, list[str]]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement a hybrid search sends (the vector and the
    keyword candidates, then the passages), and of the vector statement run exactly."""
    capture.statements.clear()
    await _sql_search(runtime, where, SearchMode.HYBRID, query, vector)
    sent = dict(capture.statements)
    walk = sent.pop(WALK_STATEMENT)
    assert set(sent) == {VECTOR_STATEMENT, KEYWORD_STATEMENT, PASSAGES_STATEMENT}, set(sent)
    plans = {
        kind: await _explain(
            runtime, where, *sent[kind], before=walk if kind == VECTOR_STATEMENT else None
        )
        for kind in sent
    }
    plans[EXACT_STATEMENT] = await _explain(runtime, where, *sent[VECTOR_STATEMENT], exact=True)
    return plans


_VECTOR_LITERAL = re.compile(r"'\[[-0-9.,e]{200,}\]'")


def _short(line: str) -> str:
    return _VECTOR_LITERAL.sub(f"'[...{DIM} floats...]'", line)


_SCAN = re.compile(
    r"(?P<node>(?:Parallel )?(?:Seq|Index|Index Only|Bitmap Heap|Bitmap Index|Function) Scan)"
    r"(?: using (?P<index>\S+))?(?: on (?P<table>\S+)(?: (?P<alias>\w+))?)?  \(cost=.*?\)"
    r"(?: \(actual time=[\d.]+\.\.(?P<ms>[\d.]+) rows=(?P<rows>[\d.]+) loops=(?P<loops>\d+)\))?"
)


def _scan(line: str) -> str | None:
    """'Index Scan using rag_chunks_hnsw_384 on rag_chunks: 50 rows, 1.5 ms' from a plan line."""
    found = _SCAN.search(line)
    if found is None:
        return None
    what = found["node"]
    if found["index"]:
        what += f" using {found['index']}"
    if found["table"]:
        what += f" on {found['table']}" + (f" {found['alias']}" if found["alias"] else "")
    if found["ms"] is None:
        return what + " (never executed)"
    loops = int(found["loops"])
    rows = float(found["rows"])
    per_loop = f" x {loops} loops" if loops > 1 else ""
    return f"{what}: {rows:g} rows{per_loop}, {float(found['ms']):g} ms"


def plan_summary(lines: list[str]) -> Json:
    lines = [_short(line) for line in lines]
    plan = "\n".join(lines)
    scans = [s for s in map(_scan, lines) if s is not None]
    execution = next((x for x in lines if x.startswith("Execution Time")), "")
    return {
        "uses_hnsw": HNSW_INDEX in plan,
        "uses_gin": GIN_INDEX in plan,
        "scans": scans,
        "execution": execution,
        "plan": lines,
    }


# --- the benchmark -------------------------------------------------------------------------


async def run(database_url: str, options: SearchOptions) -> Json:
    rng = np.random.default_rng(SEED)
    async with runtime_for(database_url) as runtime:
        principal = await new_tenant(runtime, "search")
        collection = await runtime.knowledge_bases.create(
            principal, name="bench", description="synthetic chunks", embedding_model=None
        )
        assert collection.embedding_dim == DIM
        assert principal.tenant_id is not None
        where = Target(principal, principal.tenant_id, collection.id)
        embedder = runtime.embedders.get(collection.embedding_model)
        queries = search_queries(options.queries + options.warmup, rng)
        query_vectors = await embedder.aembed(queries)
        capture = _Capture(runtime)
        largest = max(options.sizes)
        sizes: list[Json] = []
        for n in options.sizes:
            print(f"[bench] rag_search: loading {n} chunks", flush=True)
            load = await populate(database_url, where, n, rng)
            print(f"[bench] rag_search: latency at {n}", flush=True)
            measured = await latencies(runtime, where, queries, query_vectors, options)
            measured["keyword_matches"] = await keyword_matches(
                database_url, queries[options.warmup :]
            )
            print(f"[bench] rag_search: recall at {n}", flush=True)
            random_queries = _unit_vectors(rng, options.recall_queries)
            measured["recall"] = await recall(runtime, where, random_queries, options)
            measured["load"] = load
            if n == largest:
                # The most selective query that matches anything: where an index should win.
                counts = measured["keyword_matches"]["counts"]
                pick = min(
                    (i for i, c in enumerate(counts) if c > 0),
                    key=lambda i: counts[i],
                    default=0,
                )
                plan_query, plan_vector = (
                    queries[options.warmup + pick],
                    query_vectors[options.warmup + pick],
                )
                plans = await explain(runtime, where, capture, plan_query, plan_vector)
                measured["plans"] = {kind: plan_summary(p) for kind, p in plans.items()}
                measured["plan_query"] = plan_query
                measured["plan_query_matches"] = counts[pick]
            sizes.append(measured)
        semantic: Json | None = None
        if options.embedding_like_recall:
            print("[bench] rag_search: embedding the corpus's sentences", flush=True)
            started = time.perf_counter()
            sentence_vectors = await embedder.aembed(corpus_sentences())
            embedded_in = time.perf_counter() - started
            print(f"[bench] rag_search: embedding-like vectors at {largest}", flush=True)
            load = await populate(database_url, where, largest, rng, sentence_vectors)
            real_queries = query_vectors[options.warmup :][: options.recall_queries]
            semantic = {
                "load": load,
                "sentences": len(sentence_vectors),
                "sentence_embedding_seconds": round(embedded_in, 1),
                "latency": await latencies(runtime, where, queries, query_vectors, options),
                "recall": await recall(runtime, where, real_queries, options),
            }
    return summarize(options, queries, sizes, semantic)


def _ms(summary: Json) -> list[str]:
    return [f"{summary[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms")]


def _recall_rows(chunks: int, vectors: str, result: Json) -> list[list[str]]:
    return [
        [
            f"{chunks:,}",
            vectors,
            str(r["ef_search"]) + (" (the app's)" if r["product_setting"] else ""),
            f"{r['recall_at_10']:.3f}",
            f"{r['min']:.1f}",
            f"{r['queries_below_0.9']} of {result['queries']}",
            f"{r['latency']['p50_ms']:.1f}",
            f"{r['latency']['p95_ms']:.1f}",
        ]
        for r in result["by_ef_search"]
    ]


def summarize(
    options: SearchOptions,
    queries: list[str],
    sizes: list[Json],
    semantic: Json | None,
) -> Json:
    measured = [(s["load"]["chunks"], "random", s) for s in sizes]
    if semantic is not None and "latency" in semantic:
        measured.append((semantic["load"]["chunks"], "embedding-like", semantic["latency"]))
    latency_rows = []
    for chunks, vectors, m in measured:
        for mode in MODES:
            for path, key in (("SQL only", "sql_only"), ("end to end", "end_to_end")):
                latency_rows.append(
                    [f"{chunks:,}", vectors, mode.value, path, *_ms(m[key][mode.value])]
                )
    load_rows = [
        [
            f"{s['load']['chunks']:,}",
            f"{s['load']['documents']:,}",
            f"{s['load']['generate_seconds']:.1f}",
            f"{s['load']['copy_seconds']:.1f}",
            f"{s['load']['gin_build_seconds']:.1f}",
            f"{s['load']['hnsw_build_seconds']:.1f}",
            f"{s['load']['vacuum_analyze_seconds']:.1f}",
            f"{s['load']['prewarm_seconds']:.1f}",
            f"{s['load']['table_mib']:.0f}",
            f"{s['load']['gin_mib']:.0f}",
            f"{s['load']['hnsw_mib']:.0f}",
        ]
        for s in sizes
    ]
    recall_rows = [
        row
        for s in sizes
        for row in _recall_rows(s["load"]["chunks"], "random / random", s["recall"])
    ]
    if semantic is not None:
        recall_rows += _recall_rows(
            semantic["load"]["chunks"], "embedding-like / real queries", semantic["recall"]
        )
    match_rows = [
        [
            f"{s['load']['chunks']:,}",
            str(s["keyword_matches"]["p10"]),
            str(s["keyword_matches"]["p50"]),
            str(s["keyword_matches"]["p90"]),
            str(s["keyword_matches"]["max"]),
            f"{s['keyword_matches']['none']} of {s['keyword_matches']['queries']}",
        ]
        for s in sizes
    ]
    largest = sizes[-1]
    plans = largest.get("plans", {})
    plan_rows = [
        [
            mode,
            "yes" if p["uses_hnsw"] else "no",
            "yes" if p["uses_gin"] else "no",
            "; ".join(p["scans"]),
            p["execution"].removeprefix("Execution Time: "),
        ]
        for mode, p in plans.items()
    ]
    targets = []
    for chunks, vectors, m in measured:
        if chunks != largest["load"]["chunks"]:
            continue
        for path, key in (
            ("SQL only", "sql_only"),
            ("end to end, query embedding included", "end_to_end"),
        ):
            p95 = m[key]["hybrid"]["p95_ms"]
            targets.append(
                target(
                    f"hybrid p95 < {TARGET_P95_MS:.0f} ms at {chunks:,} chunks ({vectors} "
                    f"vectors), {path}",
                    f"< {TARGET_P95_MS:.0f} ms",
                    f"{p95:.1f} ms",
                    p95 < TARGET_P95_MS,
                )
            )
    n_largest = f"{largest['load']['chunks']:,}"
    for s in sizes:
        value = s["recall"]["recall_at_10"]
        targets.append(
            target(
                f"HNSW recall@10 at {s['load']['chunks']:,} chunks (random vectors and queries)",
                f">= {TARGET_RECALL}",
                f"{value:.3f}",
                value >= TARGET_RECALL,
            )
        )
    if semantic is not None:
        value = semantic["recall"]["recall_at_10"]
        targets.append(
            target(
                f"HNSW recall@10 at {semantic['load']['chunks']:,} chunks (embedding-like "
                "vectors, real query embeddings)",
                f">= {TARGET_RECALL}",
                f"{value:.3f}",
                value >= TARGET_RECALL,
            )
        )
    if VECTOR_STATEMENT in plans:
        uses = plans[VECTOR_STATEMENT]["uses_hnsw"]
        targets.append(
            target(f"{VECTOR_STATEMENT} plan uses `{HNSW_INDEX}`", "yes", _yes(uses), uses)
        )
    if KEYWORD_STATEMENT in plans:
        # The GIN index is used inside the function (migrations 0005, 0007), which a plan shows
        # as one Function Scan; the function's own queries are where `rag_chunks_tsv` serves.
        through = any(KEYWORD_FUNCTION in line for line in plans[KEYWORD_STATEMENT]["plan"])
        targets.append(
            target(
                f"{KEYWORD_STATEMENT} come from `{KEYWORD_FUNCTION}`",
                "yes",
                _yes(through),
                through,
            )
        )
    result: Json = {
        "title": "RAG search latency, HNSW recall and query plans",
        "method": [
            "One tenant, one knowledge base (all-MiniLM-L6-v2, 384 dimensions). Its chunks are "
            "written straight into `rag_chunks` with COPY as the database owner: "
            f"{CHUNKS_PER_DOCUMENT} chunks per `rag_documents` row, random unit vectors "
            f"(numpy, seed {SEED}), and "
            f"text of ~{CHUNK_CHARS} characters made of random sentences of the python-docs "
            "corpus, so that full-text search meets real words and real word frequencies. "
            f"`{GIN_INDEX}` and `{HNSW_INDEX}` are dropped before the load and created again "
            "after it with the migration's own definitions (maintenance_work_mem = "
            f"{BUILD_MAINTENANCE_WORK_MEM} for the build only), then VACUUM (ANALYZE); then "
            f"`pg_prewarm` reads {', '.join(f'`{r}`' for r in PREWARMED)} into shared_buffers "
            f"(here {sizes[-1]['load']['shared_buffers']}), where a server that has been "
            "answering searches holds them.",
            f"Queries: {len(queries)} texts, the eval set's questions and 2-6 word phrases cut "
            f"from the corpus; the first {options.warmup} are warm-up, the other "
            f"{options.queries} are timed, one at a time (one client), limit {LIMIT}. For each "
            "query in turn: its embedding alone, then every mode end to end and SQL only, so "
            "that any other load on the machine weighs on every column alike.",
            "End to end: `Runtime.retriever.search(principal, SearchQuery(query, limit=10, "
            "mode))`: one tenant transaction for the knowledge-base lookup, the vector "
            "candidates and the passages; the query embedding (MiniLM on CPU; not for keyword); "
            "in hybrid mode the keyword candidates on a second connection at the same time. "
            "SQL only: the same call with the query's embedding given "
            "(`embedded={model: vector}`, computed beforehand), so only the database work and "
            "the fusion are timed.",
            f"Recall: {options.recall_queries} random unit query vectors; the ids of the vector "
            "candidates' top 10 (`chunks.vector_candidates`: HNSW, the app's `hnsw.ef_search = "
            f"{HNSW_EF_SEARCH}`, iterative scan; then with `SET LOCAL hnsw.ef_search` changed, "
            "to show the knob) against the exact top 10 (a plain `ORDER BY embedding <=> query, "
            "id LIMIT 10` with `SET LOCAL enable_indexscan = off`: sequential scan and sort). "
            "Uniformly random vectors in 384 dimensions are the worst case for "
            "HNSW (every distance is nearly the same), so latency and recall are measured again "
            "at the largest size on embedding-like data: the same texts, each chunk's vector the "
            "normalised mean of the MiniLM embeddings of the corpus sentences its text is made "
            f"of, and as queries the MiniLM embeddings of {options.recall_queries} of the timed "
            "query texts.",
            "Plans: `EXPLAIN (ANALYZE, BUFFERS)` of the statements a hybrid search sent "
            "(captured from the engine with their parameters): the vector candidates (after the "
            "walk choice the product sends first, `mtai_vector_walk`), the keyword candidates "
            "and the passages, at the largest size (random vectors), for the most selective "
            f'timed query, "{largest.get("plan_query", "")}" (its keyword search matches '
            f"{largest.get('plan_query_matches', '?')} chunks): where an index should win; and "
            "the vector statement again with index scans off (exact, as the search recall is "
            "measured against). The keyword part runs inside `mtai_keyword_candidates` "
            "(migrations 0005 and 0007), which a plan shows as one Function Scan.",
        ],
        "tables": [
            table(
                "Loading the synthetic chunks (seconds; sizes in MiB)",
                [
                    "chunks",
                    "documents",
                    "generate",
                    "COPY",
                    "GIN build",
                    "HNSW build",
                    "VACUUM ANALYZE",
                    "prewarm",
                    "table",
                    "GIN",
                    "HNSW",
                ],
                load_rows,
                "COPY includes computing the generated `tsv` column and maintaining the "
                "primary key, `rag_chunks_position`, `rag_chunks_collection` and the metadata "
                "GIN index.",
            ),
            table(
                f"Search latency (ms, {options.queries} queries each)",
                ["chunks", "vectors", "mode", "path", "p50", "p95", "p99", "mean"],
                latency_rows,
            ),
            table(
                "Query embedding alone (MiniLM `aembed([query])`, ms, timed in the same loop)",
                ["chunks", "p50", "p95", "p99", "mean"],
                [[f"{s['load']['chunks']:,}", *_ms(s["query_embedding"])] for s in sizes],
            ),
            table(
                "Keyword matches: chunks that any word of each timed query matches",
                ["chunks", "p10", "p50", "p90", "max", "queries matching none"],
                match_rows,
                "What an OR of the question's words selects. Ranking all of them is what kept "
                "keyword search slow before migration 0005. Now the words select chunks rarest "
                "first while their matches add up to at most 20 x the candidates (1,000 "
                "chunks), counted in `rag_terms` (migration 0007), and only those chunks are "
                "ranked (all the words still score them).",
            ),
            table(
                "HNSW recall@10 against exact search",
                [
                    "chunks",
                    "vectors / queries",
                    "hnsw.ef_search",
                    "recall@10",
                    "worst query",
                    "queries below 0.9",
                    "vector SQL p50 ms",
                    "p95 ms",
                ],
                recall_rows,
            ),
            table(
                f"Plans at {n_largest} chunks (EXPLAIN ANALYZE, BUFFERS)",
                ["mode", f"uses {HNSW_INDEX}", f"uses {GIN_INDEX}", "scan nodes", "execution"],
                plan_rows,
            ),
        ],
        "plans": {f"{mode} at {n_largest} chunks": p["plan"] for mode, p in plans.items()},
        "targets": targets,
        "data": {
            "queries": queries,
            "sizes": [
                {k: v for k, v in s.items() if k != "plans"}
                | {
                    "plans": {
                        m: {k: v for k, v in p.items() if k != "plan"}
                        for m, p in s.get("plans", {}).items()
                    }
                }
                for s in sizes
            ],
            "embedding_like": semantic,
        },
    }
    result["findings"] = findings(result)
    return result


def findings(result: Json) -> list[str]:
    """Plain-language notes drawn from the numbers (re-derivable from a stored result)."""
    notes = []
    data = result.get("data", {})
    semantic = data.get("embedding_like")
    sizes = data.get("sizes", [])
    if semantic and sizes:
        random_recall = sizes[-1]["recall"]["recall_at_10"]
        best = max(r["recall_at_10"] for r in semantic["recall"]["by_ef_search"])
        notes.append(
            f"Recall at the largest size is {random_recall:.2f} on random vectors and "
            f"{semantic['recall']['recall_at_10']:.2f} on embedding-like ones at the app's "
            f"ef_search ({best:.2f} at the highest ef_search tried). Both data sets are "
            "synthetic: the embedding-like chunks, each the mean of ~8 random sentences, crowd "
            "closer together than real chunk embeddings are likely to, so real data may recall "
            "better; confirm on real embeddings before tuning. The index is built with "
            "m = 32, ef_construction = 200 over half-precision vectors (migrations 0006 and "
            "0008; pgvector's defaults, 16 and 64, recalled 0.77 at ef_search 100 on the "
            "embedding-like set)."
        )
    if sizes and "shared_buffers" in sizes[-1]["load"]:
        load = sizes[-1]["load"]
        notes.append(
            f"At {load['chunks']:,} chunks the HNSW index takes {load['hnsw_mib']:.0f} MiB and "
            f"the table {load['table_mib']:.0f} MiB; shared_buffers is "
            f"{load['shared_buffers']} on this server. A walk copies the pages it misses there "
            "from the kernel and checksums them: with PostgreSQL's default 128MB the walk at "
            '100k chunks took twice as long (docs/troubleshooting.md, "Search is slow").'
        )
    measured = [(s["load"]["chunks"], "random", s) for s in sizes]
    if semantic and "latency" in semantic:
        measured.append((semantic["load"]["chunks"], "embedding-like", semantic["latency"]))
    for chunks, vectors, m in measured:
        vector, keyword, hybrid = (m["sql_only"][mode.value] for mode in MODES)
        notes.append(
            f"At {chunks:,} chunks ({vectors} vectors), hybrid search (SQL only) took "
            f"{hybrid['p50_ms']:.1f} / {hybrid['p95_ms']:.1f} ms (p50 / p95), against "
            f"{vector['p50_ms']:.1f} / {vector['p95_ms']:.1f} for vector and "
            f"{keyword['p50_ms']:.1f} / {keyword['p95_ms']:.1f} for keyword alone: its keyword "
            "part runs on a second connection while the vector part runs, so it costs about "
            "the slower of the two, not their sum."
        )
    return notes


def _yes(value: bool) -> str:
    return "yes" if value else "no"
