"""Ingestion jobs over taskiq: Redis streams between processes, or in-process.

With Redis, a message is acknowledged only after its job has run, so a worker that dies
mid-job leaves it pending. taskiq-redis claims idle pending messages only while new ones keep
arriving, so recovery does not rely on it: the reaper (services/ingestion.py) sends again every
document whose database lease ran out. That lease decides who really works on a document, so a
redelivered message is harmless.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from taskiq import AsyncBroker, InMemoryBroker
from taskiq.acks import AcknowledgeType
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

from mtai.providers.limits.redis_store import tls_options

Handler = Callable[[uuid.UUID, uuid.UUID], Awaitable[None]]
TASK_NAME = "mtai.ingest_document"


class IngestQueue:
    def __init__(self, broker: AsyncBroker, handler: Handler, *, concurrency: int) -> None:
        self.broker = broker
        self.concurrency = concurrency
        self._running: set[asyncio.Task[object]] = set()
        # taskiq's in-memory broker starts every job at once; this bounds both brokers alike.
        self._slots = asyncio.Semaphore(concurrency)

        async def ingest_document(tenant_id: str, document_id: str) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                async with self._slots:
                    await handler(uuid.UUID(tenant_id), uuid.UUID(document_id))
            finally:
                self._running.discard(task)

        self._task = broker.register_task(ingest_document, task_name=TASK_NAME)

    @classmethod
    def in_process(cls, handler: Handler, *, concurrency: int) -> IngestQueue:
        return cls(InMemoryBroker(max_async_tasks=concurrency), handler, concurrency=concurrency)

    @classmethod
    def redis(
        cls,
        url: str,
        handler: Handler,
        *,
        queue_name: str,
        concurrency: int,
        redeliver_after_seconds: float,
        ca_file: str | None,
    ) -> IngestQueue:
        broker = RedisStreamBroker(
            url,
            queue_name=queue_name,
            consumer_group_name="mtai-workers",
            # From the start of the stream: jobs sent before any worker existed still count.
            consumer_id="0",
            idle_timeout=int(redeliver_after_seconds * 1000),
            unacknowledged_lock_timeout=30,
            xread_count=concurrency,
            **tls_options(url, ca_file),
        )
        return cls(broker, handler, concurrency=concurrency)

    @property
    def name(self) -> str:
        return "inprocess" if isinstance(self.broker, InMemoryBroker) else "redis"

    async def start(self) -> None:
        await self.broker.startup()

    async def enqueue(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        await self._task.kiq(str(tenant_id), str(document_id))

    async def consume(self) -> None:
        """Run jobs until cancelled (the worker process; the in-process queue needs no call)."""
        await run_receiver_task(
            self.broker,
            max_async_tasks=self.concurrency,
            ack_time=AcknowledgeType.WHEN_EXECUTED,
            run_startup=False,
        )

    async def drain(self) -> None:
        """Wait for the in-process jobs started so far (tests, shutdown)."""
        if isinstance(self.broker, InMemoryBroker):
            await self.broker.wait_all()

    async def aclose(self) -> None:
        # Jobs cut short keep their lease; the reaper hands them out again after a restart.
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        await self.broker.shutdown()
