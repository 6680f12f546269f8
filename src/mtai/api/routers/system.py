"""Liveness, readiness and service info: the seed guide's public contract."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from mtai import __version__
from mtai.api.deps import RuntimeDep
from mtai.errors import Unauthorized
from mtai.logging import get_logger
from mtai.providers.limits.base import LimitStoreUnavailable

router = APIRouter(tags=["system"])
log = get_logger(__name__)
CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/ping", summary='Liveness for load balancers: the JSON string "pong"')
async def ping() -> JSONResponse:
    return JSONResponse("pong")


@router.get("/healthz", summary="Liveness, no I/O")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health", summary="Readiness: every dependency checked; 503 names the failing one")
async def health(runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        await asyncio.wait_for(runtime.db.ping(), CHECK_TIMEOUT_SECONDS)
        checks["database"] = {"status": "ok"}
    except Exception as exc:
        log.warning("health.database_failed", error=str(exc)[:300])
        checks["database"] = {"status": "failed", "error": type(exc).__name__}
    if runtime.limits.shared:
        try:
            await asyncio.wait_for(runtime.limits.store.ping(), CHECK_TIMEOUT_SECONDS)
            checks["redis"] = {"status": "ok"}
        except (LimitStoreUnavailable, TimeoutError) as exc:
            checks["redis"] = {"status": "failed", "error": type(exc).__name__}
    try:
        await asyncio.wait_for(runtime.store.check(), CHECK_TIMEOUT_SECONDS)
        checks["storage"] = {"status": "ok", "backend": runtime.store.name}
    except Exception as exc:
        log.warning("health.storage_failed", error=str(exc)[:300])
        checks["storage"] = {
            "status": "failed",
            "backend": runtime.store.name,
            "error": type(exc).__name__,
        }
    # The Redis queue rides on the Redis checked above; the in-process one has no dependency.
    queue_status = checks["redis"]["status"] if runtime.queue.name == "redis" else "ok"
    checks["queue"] = {"status": queue_status, "backend": runtime.queue.name}
    failing = [name for name, check in checks.items() if check["status"] != "ok"]
    body = {
        "status": "unhealthy" if failing else "healthy",
        "service": "multitenant-ai",
        "version": __version__,
        "checks": checks,
    }
    if failing:
        body["detail"] = f"Failing checks: {', '.join(failing)}"
    return JSONResponse(body, status_code=503 if failing else 200)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(
    runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    token = runtime.settings.metrics_token
    expected = f"Bearer {token.get_secret_value()}" if token is not None else None
    if expected is not None and not hmac.compare_digest(authorization or "", expected):
        raise Unauthorized("/metrics needs 'Authorization: Bearer <MTAI_METRICS_TOKEN>'.")
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/", summary="Service info")
async def root() -> dict[str, str]:
    return {
        "message": "mtai multi-tenant AI platform",
        "version": __version__,
        "docs": "/docs",
        "ui": "/ui",
    }
