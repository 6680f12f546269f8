"""Ingestion as deployed: `mtai worker` processes fed through Redis, a worker killed mid-document,
retries against a failing embedding upstream, re-embedding after a model change, and originals
kept in S3. Everything runs against real servers (PostgreSQL, Redis, SeaweedFS, the fake
OpenAI-compatible upstream on loopback) and real `mtai worker` subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sysconfig
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from botocore.exceptions import ClientError
from redis.asyncio import Redis
from sqlalchemy import text

from mtai.app import create_app
from mtai.config import Settings
from mtai.db.migrate import upgrade
from mtai.db.repositories import documents as documents_repo
from mtai.providers.embeddings.minilm import MiniLMEmbedder
from mtai.providers.storage.base import ObjectMissing, tenant_prefix
from mtai.runtime import Runtime
from tests.conftest import TenantFixture, deployment_env, make_settings, make_tenant
from tests.integration.test_rag import (
    COLLECTIONS,
    DOCS,
    GARDEN,
    LIGHTHOUSE,
    SEARCH,
    upload_file,
    upload_text,
    wait_done,
)
from tests.support.fake_upstreams import Behaviour, FakeUpstream
from tests.support.postgres import fresh_database
from tests.support.s3_server import S3Server, create_bucket, s3_client

MINILM = MiniLMEmbedder.name
MTAI = Path(sysconfig.get_path("scripts")) / "mtai"
WORKER_READY = "worker: jobs from"
STATS = "/api/v1/rag/stats"

GLACIERS = """Glaciers and ice sheets

A glacier forms where snow piles up faster than it melts, year after year, until its own
weight turns the lower layers into dense blue ice that creeps downhill. Moraines of rock
mark the places where the ice once stood.
"""

Document = dict[str, Any]


@pytest.fixture(scope="module")
async def ingest_db(pg_admin_url: str) -> AsyncIterator[str]:
    """A database of this module's own.

    Every process that runs ingestion jobs also reaps every stale document of its database. These
    tests make documents stale on purpose (a killed worker, retries); the suite's shared app,
    with its own storage directory and embedding models, must not take them over, nor must these
    tests' short-lease reapers take over the rest of the suite's documents.
    """
    with fresh_database(pg_admin_url) as url:
        await upgrade(url, "mtai_app")
        yield url


# --------------------------------------------------------------------------- helpers


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """An API app of its own (own settings, own runtime) and an in-memory HTTP client to it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest-test") as c:
            runtime: Runtime = app.state.runtime
            yield runtime, c


def redis_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """An API that only enqueues, to a Redis stream no other test reads."""
    return make_settings(
        database_url,
        queue_backend="redis",
        redis_url=redis_url,
        queue_name=f"mtai:test:{uuid.uuid4().hex}",
        **overrides,
    )


def openai_settings(
    database_url: str, fake: FakeUpstream, model: str, **overrides: Any
) -> Settings:
    """An in-process API that also offers `openai/<model>`, served by the fake upstream."""
    return make_settings(
        database_url,
        embedding_openai_base_url=f"{fake.base_url}/v1",
        embedding_openai_api_key="fake-embedding-key",  # the fake insists on a bearer token
        embedding_openai_model=model,
        embedding_openai_dimension=fake.embedding_dim,
        **overrides,
    )


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """`mtai worker` for the deployment `settings` describe, in its own process group."""
    assert settings.redis_url is not None
    env = deployment_env(
        settings,
        MTAI_QUEUE_BACKEND="redis",
        REDIS_URL=settings.redis_url,
        MTAI_QUEUE_NAME=settings.queue_name,
        MTAI_WORKER_CONCURRENCY=str(settings.worker_concurrency),
        MTAI_INGEST_LEASE_SECONDS=str(settings.ingest_lease_seconds),
        MTAI_INGEST_MAX_ATTEMPTS=str(settings.ingest_max_attempts),
    )
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(MTAI), "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def log_tail(log_path: Path, lines: int = 30) -> str:
    try:
        content = log_path.read_text(errors="replace")
    except OSError as exc:
        return f"(no worker log: {exc})"
    return "\n".join(content.splitlines()[-lines:])


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and its group (it leads its own: start_new_session=True).

    Only while it has not been reaped: until then its pid cannot belong to anyone else.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


async def wait_ready(process: subprocess.Popen[bytes], log_path: Path, within: float = 90) -> None:
    deadline = time.monotonic() + within
    while WORKER_READY not in log_tail(log_path, 1000):
        assert process.poll() is None, (
            f"worker exited with {process.returncode} before it was ready:\n{log_tail(log_path)}"
        )
        assert time.monotonic() < deadline, f"worker not ready in {within} s:\n{log_tail(log_path)}"
        await asyncio.sleep(0.1)


async def stop_gracefully(process: subprocess.Popen[bytes], within: float = 30) -> int:
    """SIGTERM by pid, as an orchestrator stops a worker; its exit code (SIGKILL if it hangs)."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    try:
        return await asyncio.to_thread(process.wait, within)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise AssertionError(f"worker ignored SIGTERM for {within} s") from None


async def delete_queue_keys(redis_url: str, queue_name: str) -> None:
    """The test's stream and taskiq's lock beside it; the shared Redis is never flushed."""
    redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"*{queue_name}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def poll_document(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    document_id: str,
    until: Callable[[Document], bool],
    *,
    within: float,
    what: str,
) -> Document:
    """The document as soon as `until(document)` holds; fails with its last state otherwise."""
    deadline = time.monotonic() + within
    while True:
        response = await client.get(f"{DOCS}/{document_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: Document = response.json()
        if until(body):
            return body
        assert time.monotonic() < deadline, f"not {what} within {within:.0f} s; last state: {body}"
        await asyncio.sleep(0.1)


def finished(body: Document) -> bool:
    return body["status"] in ("ready", "failed")


async def stats(client: httpx.AsyncClient, tenant: TenantFixture) -> dict[str, Any]:
    response = await client.get(STATS, headers=tenant.owner)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def search(
    client: httpx.AsyncClient, tenant: TenantFixture, query: str, **fields: Any
) -> list[dict[str, Any]]:
    response = await client.post(SEARCH, json={"query": query, **fields}, headers=tenant.owner)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def logbook(paragraphs: int = 120) -> str:
    """A long, deterministic text: about 110 of MiniLM's 200-token chunks, 4 batches of 32.

    Long enough that a worker can be seen under way and killed before it finishes (the first
    batch takes 2-6 s on two loaded cores), short enough that a whole run fits in the test.
    """
    words = [
        *("harbour", "lantern", "keeper", "signal", "tide", "beacon", "rope", "anchor", "vessel"),
        *("current", "chart", "compass", "storm", "gull", "reef", "pier", "ledger", "hull"),
        *("mast", "rudder", "swell", "squall", "barometer", "channel", "buoy"),
    ]

    def sentence(p: int, s: int) -> str:
        digest = hashlib.sha256(f"{p}-{s}".encode()).digest()
        picked = " ".join(words[b % len(words)] for b in digest[:14])
        return f"Entry {p}-{s} records that the {picked}."

    return "\n\n".join(" ".join(sentence(p, s) for s in range(6)) for p in range(paragraphs))


async def stored_chunks(runtime: Runtime, tenant_id: uuid.UUID, document_id: str) -> list[int]:
    """The ordinals of the document's chunks as stored, in order."""
    async with runtime.db.tenant(tenant_id) as session:
        rows = await session.execute(
            text("SELECT ordinal FROM rag_chunks WHERE document_id = :d ORDER BY ordinal"),
            {"d": uuid.UUID(document_id)},
        )
        return [int(ordinal) for (ordinal,) in rows.all()]


async def stored_vectors(
    runtime: Runtime, tenant_id: uuid.UUID, collection_id: str
) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]:
    """Every chunk vector of a collection, by chunk id, as PostgreSQL holds it."""
    async with runtime.db.tenant(tenant_id) as session:
        rows = await session.execute(
            text("SELECT id, embedding::text FROM rag_chunks WHERE collection_id = :c"),
            {"c": uuid.UUID(collection_id)},
        )
        return {str(i): np.array(json.loads(v), dtype=np.float64) for i, v in rows.all()}


# --------------------------------------------------------------------------- Redis queue


async def test_redis_queue_feeds_a_worker_process_end_to_end(
    ingest_db: str, redis_url: str, tmp_path: Path
) -> None:
    settings = redis_settings(ingest_db, redis_url)
    log_path = tmp_path / "worker.log"
    worker: subprocess.Popen[bytes] | None = None
    try:
        async with serving(settings) as (runtime, client):
            tenant = await make_tenant(client, runtime)
            health = (await client.get("/health")).json()
            assert health["checks"]["queue"] == {"status": "ok", "backend": "redis"}, health

            # Sent before any worker exists: the job waits in the stream.
            early = await upload_text(client, tenant.owner, LIGHTHOUSE, title="Lighthouses")
            assert early["status"] == "queued", early
            await asyncio.sleep(0.5)
            still = await client.get(f"{DOCS}/{early['id']}", headers=tenant.owner)
            assert still.json()["status"] == "queued", "the API itself must not ingest"

            worker = start_worker(settings, log_path)
            await wait_ready(worker, log_path)
            later = [
                await upload_text(client, tenant.owner, GARDEN, title="Compost"),
                await upload_text(client, tenant.owner, GLACIERS, title="Glaciers"),
            ]
            for created in [early, *later]:
                done = await wait_done(client, tenant.owner, created["id"])
                assert done["status"] == "ready", f"{done}\nworker log:\n{log_tail(log_path)}"
                assert done["attempts"] == 1, done
                assert done["chunk_count"] >= 1, done

            for query, title in (
                ("diaphone", "Lighthouses"),
                ("compost", "Compost"),
                ("moraines", "Glaciers"),
            ):
                found = await search(client, tenant, query, mode="keyword")
                assert [r["title"] for r in found][:1] == [title], (query, found)
            nearest = await search(client, tenant, "how does ice move down a valley", mode="vector")
            assert nearest, "vector search found nothing"
            assert nearest[0]["title"] == "Glaciers", nearest
            totals = await stats(client, tenant)
            assert totals["documents"] == 3, totals
            assert totals["by_status"] == {"ready": 3}, totals

            code = await stop_gracefully(worker)
            assert code == 0, f"worker exited with {code} on SIGTERM:\n{log_tail(log_path)}"
    finally:
        if worker is not None:
            kill_group(worker)
        await delete_queue_keys(redis_url, settings.queue_name)


async def test_a_worker_killed_mid_document_is_replaced_without_duplicates(
    ingest_db: str, redis_url: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    # A short lease: the document of a dead worker is handed out again after 6 s.
    settings = redis_settings(ingest_db, redis_url, ingest_lease_seconds=6)
    first_log, second_log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with serving(settings) as (runtime, client):
            tenant = await make_tenant(client, runtime)
            workers.append(start_worker(settings, first_log))
            created = await upload_text(client, tenant.owner, logbook(), title="Logbook")
            busy = await poll_document(
                client,
                tenant.owner,
                created["id"],
                lambda b: finished(b) or (b["status"] == "processing" and b["progress"] > 0),
                within=60,
                what="under way",
            )
            assert busy["status"] == "processing", (
                f"the document finished before the worker could be killed; make it bigger: {busy}"
            )
            assert busy["attempts"] == 1, busy
            kill_group(workers[0])
            assert workers[0].returncode == -signal.SIGKILL

            workers.append(start_worker(settings, second_log))
            remaining = 90 - (time.monotonic() - started)
            done = await poll_document(
                client, tenant.owner, created["id"], finished, within=remaining, what="finished"
            )
            assert done["status"] == "ready", f"{done}\nworker 2 log:\n{log_tail(second_log)}"
            assert done["attempts"] == 2, done
            assert done["progress"] == 1.0, done
            count = done["chunk_count"]
            assert count >= 80, f"the test document is too small ({count} chunks)"
            # The dead worker's attempt left nothing behind: exactly one set of chunks.
            ordinals = await stored_chunks(runtime, tenant.id, created["id"])
            assert ordinals == list(range(count)), f"{count} chunks expected, found {ordinals}"
            totals = await stats(client, tenant)
            assert totals["chunks"] == count, f"chunks duplicated or lost: {totals}"

            code = await stop_gracefully(workers[1])
            assert code == 0, f"worker exited with {code} on SIGTERM:\n{log_tail(second_log)}"
        elapsed = time.monotonic() - started
        assert elapsed < 90, f"took {elapsed:.0f} s"
    finally:
        for worker in workers:
            kill_group(worker)
        await delete_queue_keys(redis_url, settings.queue_name)


# --------------------------------------------------------------------------- retries


async def test_a_failed_attempt_is_retried_and_succeeds(
    ingest_db: str, fake_upstream: FakeUpstream
) -> None:
    model = f"emb-retry-{secrets.token_hex(3)}"
    settings = openai_settings(
        ingest_db,
        fake_upstream,
        model,
        embedding_model=f"openai/{model}",
        # The reaper runs every lease/4 s (at least 1 s): retries are picked up promptly.
        ingest_lease_seconds=5,
        ingest_max_attempts=3,
    )
    # The embedder tries 3 times (2 retries) per attempt: all of the first attempt's fail.
    fake_upstream.script(model, *[Behaviour(kind="500")] * 3)
    async with serving(settings) as (runtime, client):
        tenant = await make_tenant(client, runtime)
        created = await upload_text(client, tenant.owner, GARDEN, title="Compost")
        waiting = await poll_document(
            client,
            tenant.owner,
            created["id"],
            lambda b: finished(b) or (b["status"] == "queued" and b["error"] is not None),
            within=60,
            what="waiting for a retry",
        )
        assert waiting["status"] == "queued", waiting
        assert waiting["attempts"] == 1, waiting
        error = waiting["error"]
        assert error.startswith("Attempt 1 of 3 failed ("), error
        assert error.endswith("; retrying."), error
        assert f"openai/{model}" in error, error
        assert "failed after 3 attempts" in error, error
        assert "fake-embedding-key" not in error

        done = await wait_done(client, tenant.owner, created["id"])
        assert done["status"] == "ready", done
        assert done["attempts"] == 2, done
        assert done["error"] is None, done
        assert done["embedding_model"] == f"openai/{model}", done
        assert fake_upstream.count(model) == 4  # three failures, then the one that worked


async def test_persistent_failure_ends_failed_after_the_last_attempt(
    ingest_db: str, fake_upstream: FakeUpstream
) -> None:
    model = f"emb-down-{secrets.token_hex(3)}"
    attempts = 2  # the second retry would wait 20 s more; two attempts show the same path
    settings = openai_settings(
        ingest_db,
        fake_upstream,
        model,
        embedding_model=f"openai/{model}",
        ingest_lease_seconds=5,
        ingest_max_attempts=attempts,
    )
    fake_upstream.script(model, *[Behaviour(kind="500")] * (3 * attempts))
    async with serving(settings) as (runtime, client):
        tenant = await make_tenant(client, runtime)
        created = await upload_text(client, tenant.owner, GLACIERS)
        done = await poll_document(
            client, tenant.owner, created["id"], finished, within=90, what="finished"
        )
        assert done["status"] == "failed", done
        assert done["attempts"] == attempts, done
        assert done["chunk_count"] == 0, done
        error = done["error"]
        assert error.startswith(f"Processing failed {attempts} times; the last error was: "), error
        assert "the endpoint is failing" in error, error
        assert fake_upstream.count(model) == 3 * attempts
        assert (await stats(client, tenant))["chunks"] == 0


# --------------------------------------------------------------------------- re-embedding


async def test_changing_the_embedding_model_reembeds_the_collection(
    ingest_db: str, fake_upstream: FakeUpstream
) -> None:
    model = f"emb-switch-{secrets.token_hex(3)}"
    remote = f"openai/{model}"
    settings = openai_settings(ingest_db, fake_upstream, model)
    async with serving(settings) as (runtime, client):
        tenant = await make_tenant(client, runtime)
        made = await client.post(
            COLLECTIONS, json={"name": "Geo", "embedding_model": MINILM}, headers=tenant.owner
        )
        assert made.status_code == 201, made.text
        collection = made.json()
        uploaded = [
            await upload_text(client, tenant.owner, content, title=title, collection="Geo")
            for content, title in ((GLACIERS, "Glaciers"), (LIGHTHOUSE, "Lighthouses"))
        ]
        for created in uploaded:
            first = await wait_done(client, tenant.owner, created["id"])
            assert (first["status"], first["embedding_model"]) == ("ready", MINILM), first
        assert fake_upstream.count(model) == 0

        changed = await client.patch(
            f"{COLLECTIONS}/{collection['id']}",
            json={"embedding_model": remote},
            headers=tenant.owner,
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["reembedding"] == 2, changed.json()
        shown = await client.get(f"{COLLECTIONS}/{collection['id']}", headers=tenant.owner)
        assert shown.json()["embedding_model"] == remote, shown.json()
        assert shown.json()["embedding_dim"] == fake_upstream.embedding_dim, shown.json()

        chunks = 0
        for created in uploaded:
            again = await poll_document(
                client,
                tenant.owner,
                created["id"],
                lambda b: (
                    b["status"] == "failed" or (finished(b) and b["embedding_model"] == remote)
                ),
                within=60,
                what=f"re-embedded with {remote}",
            )
            assert again["status"] == "ready", again
            assert again["attempts"] == 1, again  # the count starts again for the new model
            chunks += again["chunk_count"]
        assert fake_upstream.count(model) >= 1
        totals = await stats(client, tenant)
        assert totals["chunks"] == chunks, f"old vectors left behind: {totals}"

        # 8-dimensional vectors have no HNSW index: vector search computes cosine distances
        # exactly, over every chunk of the collection.
        query = "moving ice"
        hits = await search(
            client, tenant, query, mode="vector", limit=50, collection_ids=[collection["id"]]
        )
        vectors = await stored_vectors(runtime, tenant.id, collection["id"])
        assert len(vectors) == chunks, vectors.keys()
        assert {h["chunk_id"] for h in hits} == set(vectors), hits
        asked = np.array(fake_upstream.embed(query), dtype=np.float64)
        for hit in hits:
            vector = vectors[hit["chunk_id"]]
            cosine = float(asked @ vector / (np.linalg.norm(asked) * np.linalg.norm(vector)))
            assert hit["score"] == pytest.approx(cosine, abs=1e-5), (hit, cosine)
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True), scores
        assert [h["vector_rank"] for h in hits] == list(range(1, len(hits) + 1)), hits


async def test_an_openai_compatible_model_gets_its_query_and_passage_prefixes(
    ingest_db: str, fake_upstream: FakeUpstream
) -> None:
    """An E5 model behind a compatible server reads passages and queries behind prefixes
    (MTAI_EMBEDDING_OPENAI_*_PREFIX): what ingestion and search send upstream, and what the
    stored vectors and the search's scores are of."""
    model = f"e5-{secrets.token_hex(3)}"
    settings = openai_settings(
        ingest_db,
        fake_upstream,
        model,
        embedding_model=f"openai/{model}",
        embedding_openai_query_prefix="query: ",
        embedding_openai_passage_prefix="passage: ",
    )
    async with serving(settings) as (runtime, client):
        tenant = await make_tenant(client, runtime)
        created = await upload_text(client, tenant.owner, GLACIERS, title="Glaciers")
        done = await wait_done(client, tenant.owner, created["id"])
        assert done["status"] == "ready", done
        sent = [
            text for r in fake_upstream.requests if r.model == model for text in r.json["input"]
        ]
        assert sent, "nothing was embedded upstream"
        assert all(text.startswith("passage: Glaciers") for text in sent), sent
        hits = await search(client, tenant, "moving ice", mode="vector")
        assert hits, hits
        queries = [r.json["input"] for r in fake_upstream.requests if r.model == model][-1]
        assert queries == ["query: moving ice"], queries
        asked = np.array(fake_upstream.embed("query: moving ice"), dtype=np.float64)
        stored = np.array(fake_upstream.embed(sent[0]), dtype=np.float64)
        cosine = float(asked @ stored / (np.linalg.norm(asked) * np.linalg.norm(stored)))
        assert hits[0]["score"] == pytest.approx(cosine, abs=1e-5), (hits[0], cosine)


# --------------------------------------------------------------------------- S3 storage


async def test_originals_live_in_s3_and_health_checks_the_bucket(
    ingest_db: str, s3_server: S3Server
) -> None:
    bucket = create_bucket(s3_server)
    s3 = {
        "storage_backend": "s3",
        "s3_endpoint_url": s3_server.endpoint_url,
        "s3_access_key_id": s3_server.access_key_id,
        "s3_secret_access_key": s3_server.secret_access_key,
        "s3_region": s3_server.region,
    }
    data = GLACIERS.encode()
    async with serving(make_settings(ingest_db, s3_bucket=bucket, **s3)) as (runtime, client):
        health = await client.get("/health")
        assert health.status_code == 200, health.text
        assert health.json()["checks"]["storage"] == {"status": "ok", "backend": "s3"}

        tenant = await make_tenant(client, runtime)
        uploaded = await upload_file(client, tenant.owner, "glaciers.txt", data, "text/plain")
        assert uploaded.status_code == 202, uploaded.text
        document_id = uploaded.json()["id"]
        done = await wait_done(client, tenant.owner, document_id)
        assert done["status"] == "ready", done
        found = await search(client, tenant, "moraines", mode="keyword")
        assert [r["document_id"] for r in found] == [document_id], found

        async with runtime.db.tenant(tenant.id) as session:
            row = await documents_repo.get(session, uuid.UUID(document_id))
        assert row is not None
        assert row.storage_key.startswith(tenant_prefix(tenant.id)), row.storage_key
        assert await runtime.store.get(row.storage_key) == data
        async with s3_client(s3_server) as direct:  # seen by S3 itself, not through the app
            stored = await direct.get_object(Bucket=bucket, Key=row.storage_key)
            async with stored["Body"] as body:
                assert await body.read() == data

            deleted = await client.delete(f"{DOCS}/{document_id}", headers=tenant.owner)
            assert deleted.status_code == 204, deleted.text
            with pytest.raises(ObjectMissing):
                await runtime.store.get(row.storage_key)
            with pytest.raises(ClientError) as missing:
                await direct.head_object(Bucket=bucket, Key=row.storage_key)
            assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")
            listed = await direct.list_objects_v2(Bucket=bucket, Prefix=tenant_prefix(tenant.id))
            assert listed.get("KeyCount", 0) == 0, listed.get("Contents")

    absent = f"mtai-test-absent-{secrets.token_hex(6)}"
    async with serving(make_settings(ingest_db, s3_bucket=absent, **s3)) as (_, client):
        health = await client.get("/health")
        assert health.status_code == 503, health.text
        body = health.json()
        storage = body["checks"]["storage"]
        assert (storage["status"], storage["backend"]) == ("failed", "s3"), body
        assert body["checks"]["database"]["status"] == "ok", body
        assert "storage" in body["detail"], body
