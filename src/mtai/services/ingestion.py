"""Ingestion: original -> parse -> chunk -> embed in batches -> chunks stored, for one document.

Exactly one worker holds a document at a time (a lease in its row, renewed while it works);
the chunks and the 'ready' status are written in one transaction that also checks the lease,
so a re-run, a redelivered message or a worker presumed dead can never duplicate chunks. The
reaper sends again what nobody holds: lost messages, dead workers' documents, due retries.

The parse runs in a child process under the platform's limits (rag/parsing/sandbox.py); a
document over a limit fails at once, since it would fail the same way on every retry. The
lease is renewed during the parse only until the parse's deadline: past it, whatever holds the
document is wedged, and the lease runs out so that the reaper can hand the document on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import anyio
import numpy as np

from mtai.db.engine import Database
from mtai.db.models import Collection, Document
from mtai.db.repositories import chunks as chunks_repo
from mtai.db.repositories import collections as collections_repo
from mtai.db.repositories import documents as documents_repo
from mtai.errors import AppError
from mtai.logging import get_logger
from mtai.providers.embeddings.base import Embedder
from mtai.providers.embeddings.registry import EmbedderRegistry
from mtai.providers.storage.base import ObjectMissing, ObjectStore
from mtai.rag.chunking import Chunk, chunk_document
from mtai.rag.parsing import ParsedDocument, ParseError
from mtai.rag.parsing.model import limit_exceeded
from mtai.rag.parsing.sandbox import SandboxLimits, parse_in_child
from mtai.services.metering import Meter, provider_of

log = get_logger(__name__)
Enqueue = Callable[[uuid.UUID, uuid.UUID], Awaitable[None]]
HEARTBEAT_SECONDS = 2.0
# Past the parse's deadline, the time allowed to kill the child and read its verdict before the
# heartbeat stops renewing the lease.
PARSE_GRACE_SECONDS = 10.0
REAP_BATCH = 200
MISSING_ORIGINAL = (
    "The original file is missing from storage, so the document cannot be processed; "
    "delete it and upload it again."
)


def with_title(parsed: ParsedDocument, title: str) -> ParsedDocument:
    """The document's title heads every heading path, so each chunk is embedded with it.

    A passage deep in a long document rarely names what the document is about; with the title
    in front, vector search ranked better on every metric of the evaluation set (docs/rag.md).
    """
    blocks = [replace(b, heading_path=(title, *b.heading_path)) for b in parsed.blocks]
    return replace(parsed, blocks=blocks)


def stored_heading(chunk: Chunk, title: str) -> str:
    """The chunk's own headings, without the title that `with_title` put in front (the
    chunker drops outer headings first when a path is too long, so it may be gone already)."""
    path = chunk.heading_path
    return " > ".join(path[1:] if path[:1] == (title,) else path)


class LeaseLost(Exception):
    """Another worker took the document over (this one was presumed dead)."""


@dataclass
class _Lease:
    progress: float = 0.0
    lost: bool = False
    # Event-loop time after which the lease is no longer renewed (the current step's budget).
    renew_until: float | None = None


def _retry_delay(attempt: int) -> float:
    return float(min(300, 5 * 4 ** (attempt - 1)))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AppError):
        return exc.detail
    # Internal errors can carry SQL or paths: the log has them, the user gets the kind.
    return f"an internal error ({type(exc).__name__}); the server log has the details"


class Ingestor:
    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        embedders: EmbedderRegistry,
        *,
        chunk_tokens: int,
        overlap_tokens: int,
        lease_seconds: float,
        max_attempts: int,
        parse_limits: SandboxLimits,
        max_chunks: int,
        meter: Meter,
    ) -> None:
        self.meter = meter  # records each document's embedding tokens and charges the budget
        self.db = db
        self.store = store
        self.embedders = embedders
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.parse_limits = parse_limits
        self.max_chunks = max_chunks
        # One batch at a time per process: a batch already keeps every core busy (BLAS), and
        # two at once only contend (measured: 0.73 of the ceiling with two, 0.85 with one).
        # Other documents still parse, chunk and write meanwhile.
        self._embedding = asyncio.Lock()

    async def process(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        """Ingest one document; never raises for the document's own problems."""
        async with self.db.tenant(tenant_id) as session:
            attempt = await documents_repo.claim(session, document_id, self.lease_seconds)
            if attempt is None:
                log.info("rag.ingest.skipped", document_id=str(document_id))
                return
            document = await documents_repo.get(session, document_id)
            assert document is not None
            collection = await collections_repo.get(session, document.collection_id)
            assert collection is not None
        log.info("rag.ingest.start", document_id=str(document_id), attempt=attempt)
        kind: str | None = None
        try:
            async with self._heartbeat(tenant_id, document_id, attempt) as lease:
                parsed = await self._parse(document, lease)
                kind = parsed.kind.value
                await self._ingest(document, collection, parsed, attempt, lease)
        except LeaseLost:
            log.warning("rag.ingest.lease_lost", document_id=str(document_id), attempt=attempt)
        except ParseError as exc:
            await self._fail(tenant_id, document_id, attempt, str(exc), kind)
        except ObjectMissing:
            await self._fail(tenant_id, document_id, attempt, MISSING_ORIGINAL, kind)
        except Exception as exc:
            log.exception("rag.ingest.error", document_id=str(document_id), attempt=attempt)
            await self._retry_or_fail(tenant_id, document_id, attempt, exc, kind)

    async def _parse(self, document: Document, lease: _Lease) -> ParsedDocument:
        data = await self.store.get(document.storage_key)
        loop = asyncio.get_running_loop()
        lease.renew_until = loop.time() + self.parse_limits.timeout_seconds + PARSE_GRACE_SECONDS
        try:
            return await parse_in_child(
                data,
                filename=document.filename,
                content_type=document.content_type,
                limits=self.parse_limits,
            )
        finally:
            lease.renew_until = None

    async def _ingest(
        self,
        document: Document,
        collection: Collection,
        parsed: ParsedDocument,
        attempt: int,
        lease: _Lease,
    ) -> None:
        embedder = self.embedders.get(collection.embedding_model)
        max_tokens = min(self.chunk_tokens, embedder.max_tokens)
        pieces = await anyio.to_thread.run_sync(
            lambda: chunk_document(
                with_title(parsed, document.title),
                # What the model reads is the passage behind its prefix: chunks fit with it.
                lambda text: embedder.count_tokens(embedder.passage_prefix + text),
                max_tokens=max_tokens,
                overlap_tokens=min(self.overlap_tokens, max_tokens // 2),
            )
        )
        if not pieces:
            raise ParseError("The document contains no text to index.")
        if len(pieces) > self.max_chunks:
            raise limit_exceeded(
                f"The document makes {len(pieces)} chunks",
                "MTAI_INGEST_MAX_CHUNKS",
                self.max_chunks,
            )
        embedding_started = time.perf_counter()
        vectors = await self._embed(embedder, pieces, lease)
        embedding_ms = int((time.perf_counter() - embedding_started) * 1000)
        metadata = dict(document.doc_metadata)
        rows = [
            chunks_repo.NewChunk(
                ordinal=c.ordinal,
                text=c.text,
                heading=stored_heading(c, document.title),
                page=c.page,
                tokens=c.tokens,
                metadata=metadata,
            )
            for c in pieces
        ]
        async with self.db.tenant(document.tenant_id) as session:
            await chunks_repo.replace(
                session,
                tenant_id=document.tenant_id,
                collection_id=collection.id,
                document_id=document.id,
                chunks=rows,
                vectors=vectors,
            )
            finished = await documents_repo.finish(
                session,
                document.id,
                attempt,
                kind=parsed.kind.value,
                chunk_count=len(rows),
                token_count=sum(c.tokens for c in pieces),
                embedding_model=embedder.name,
            )
            if not finished:
                raise LeaseLost  # rolls the chunks back with it
        log.info("rag.ingest.ready", document_id=str(document.id), chunks=len(rows))
        await self.meter.charge_ingestion(
            tenant_id=document.tenant_id,
            document_id=document.id,
            attempt=attempt,
            created_by=document.created_by,
            model=embedder.name,
            provider=provider_of(embedder.name),
            tokens=sum(c.tokens for c in pieces),
            latency_ms=embedding_ms,
        )

    async def _embed(
        self, embedder: Embedder, pieces: list[Chunk], lease: _Lease
    ) -> np.ndarray[tuple[int, int], np.dtype[np.float32]]:
        batches = []
        for start in range(0, len(pieces), embedder.batch_size):
            if lease.lost:
                raise LeaseLost
            batch = pieces[start : start + embedder.batch_size]
            async with self._embedding:
                batches.append(
                    await embedder.aembed(
                        [embedder.passage_prefix + c.embedding_text for c in batch]
                    )
                )
            lease.progress = min(0.99, (start + len(batch)) / len(pieces))
        return np.concatenate(batches).astype(np.float32, copy=False)

    @contextlib.asynccontextmanager
    async def _heartbeat(
        self, tenant_id: uuid.UUID, document_id: uuid.UUID, attempt: int
    ) -> AsyncIterator[_Lease]:
        """Renews the lease and publishes progress while the body runs, and its current step
        is within its budget."""
        lease = _Lease()
        loop = asyncio.get_running_loop()

        async def beat() -> None:
            warned = False
            while True:
                await asyncio.sleep(HEARTBEAT_SECONDS)
                if lease.renew_until is not None and loop.time() > lease.renew_until:
                    if not warned:
                        log.warning("rag.ingest.over_budget", document_id=str(document_id))
                        warned = True
                    continue  # let the lease run out: the reaper hands the document on
                async with self.db.tenant(tenant_id) as session:
                    held = await documents_repo.heartbeat(
                        session,
                        document_id,
                        attempt,
                        progress=lease.progress,
                        lease_seconds=self.lease_seconds,
                    )
                if not held:
                    lease.lost = True
                    return

        task = asyncio.create_task(beat(), name=f"heartbeat-{document_id}")
        try:
            yield lease
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if lease.lost:
            raise LeaseLost

    async def _fail(
        self,
        tenant_id: uuid.UUID,
        document_id: uuid.UUID,
        attempt: int,
        error: str,
        kind: str | None,
    ) -> None:
        log.info("rag.ingest.failed", document_id=str(document_id), error=error)
        async with self.db.tenant(tenant_id) as session:
            await documents_repo.fail(session, document_id, attempt, error=error, kind=kind)

    async def _retry_or_fail(
        self,
        tenant_id: uuid.UUID,
        document_id: uuid.UUID,
        attempt: int,
        exc: BaseException,
        kind: str | None,
    ) -> None:
        reason = _describe(exc)
        if attempt >= self.max_attempts:
            await self._fail(
                tenant_id,
                document_id,
                attempt,
                f"Processing failed {attempt} times; the last error was: {reason}",
                kind,
            )
            return
        async with self.db.tenant(tenant_id) as session:
            await documents_repo.retry_later(
                session,
                document_id,
                attempt,
                error=f"Attempt {attempt} of {self.max_attempts} failed ({reason}); retrying.",
                delay=_retry_delay(attempt),
            )

    async def reap(self, enqueue: Enqueue) -> int:
        """Send again every unfinished document nobody holds; give up on exhausted ones."""
        async with self.db.platform() as session:
            stale = await documents_repo.stale(session, limit=REAP_BATCH)
            exhausted = [s for s in stale if s.attempts >= self.max_attempts]
            for s in exhausted:
                await documents_repo.give_up(
                    session,
                    s.document_id,
                    f"Processing stopped {s.attempts} times without finishing (the worker "
                    "may have run out of memory or been restarted); upload a smaller file or "
                    "ask an administrator to check the worker.",
                )
            due = [s for s in stale if s.attempts < self.max_attempts]
            await documents_repo.resend(session, [s.document_id for s in due], self.lease_seconds)
        for s in due:
            await enqueue(s.tenant_id, s.document_id)
        if stale:
            log.info("rag.reaper", resent=len(due), gave_up=len(exhausted))
        return len(due)

    async def run_reaper(self, enqueue: Enqueue, interval: float) -> None:
        while True:
            try:
                await self.reap(enqueue)
            except Exception:
                log.exception("rag.reaper_failed")
            await asyncio.sleep(interval)
