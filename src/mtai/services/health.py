"""Readiness: every dependency probed, at most once per interval per process.

`/health` needs no credential, and its storage check writes, reads and deletes an object, so
a flood of calls must not turn into a flood of writes. A probe's result is reused for
`cache_seconds`; callers that arrive while a probe runs wait for it instead of starting their
own. A dependency that goes down (or comes back) shows within one interval.
"""

from __future__ import annotations

import asyncio
import time

from mtai.db.engine import Database
from mtai.logging import get_logger
from mtai.providers.limits.base import LimitStoreUnavailable
from mtai.providers.storage.base import ObjectStore
from mtai.services.limits import LimitService

log = get_logger(__name__)
CHECK_TIMEOUT_SECONDS = 3.0

Checks = dict[str, dict[str, str]]


class HealthProbe:
    def __init__(
        self,
        db: Database,
        limits: LimitService,
        store: ObjectStore,
        *,
        queue_backend: str,
        cache_seconds: float,
        timeout_seconds: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self._db = db
        self._limits = limits
        self._store = store
        self._queue_backend = queue_backend
        self.cache_seconds = cache_seconds
        self._timeout = timeout_seconds
        self._lock = asyncio.Lock()
        self._last: Checks | None = None
        self._taken_at = 0.0

    async def checks(self) -> Checks:
        """Each dependency's state, e.g. {"database": {"status": "ok"}, ...}."""
        last = self._fresh()
        if last is None:
            async with self._lock:
                last = self._fresh()  # another caller may have probed while this one waited
                if last is None:
                    last = await self._probe()
                    self._last, self._taken_at = last, time.monotonic()
        return {name: dict(check) for name, check in last.items()}

    def _fresh(self) -> Checks | None:
        if self._last is not None and time.monotonic() - self._taken_at < self.cache_seconds:
            return self._last
        return None

    async def _probe(self) -> Checks:
        checks: Checks = {}
        try:
            await asyncio.wait_for(self._db.ping(), self._timeout)
            checks["database"] = {"status": "ok"}
        except Exception as exc:
            log.warning("health.database_failed", error=str(exc)[:300])
            checks["database"] = {"status": "failed", "error": type(exc).__name__}
        if self._limits.shared:
            try:
                await asyncio.wait_for(self._limits.store.ping(), self._timeout)
                checks["redis"] = {"status": "ok"}
            except (LimitStoreUnavailable, TimeoutError) as exc:
                checks["redis"] = {"status": "failed", "error": type(exc).__name__}
        try:
            await asyncio.wait_for(self._store.check(), self._timeout)
            checks["storage"] = {"status": "ok", "backend": self._store.name}
        except Exception as exc:
            log.warning("health.storage_failed", error=str(exc)[:300])
            checks["storage"] = {
                "status": "failed",
                "backend": self._store.name,
                "error": type(exc).__name__,
            }
        # The Redis queue rides on the Redis checked above; the in-process one has no dependency.
        queue_status = checks["redis"]["status"] if self._queue_backend == "redis" else "ok"
        checks["queue"] = {"status": queue_status, "backend": self._queue_backend}
        return checks
