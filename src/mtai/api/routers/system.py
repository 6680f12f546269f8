"""Liveness, readiness and service info: the seed guide's public contract."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from mtai import __version__
from mtai.api.deps import RuntimeDep
from mtai.errors import Unauthorized
from mtai.services.health import HealthProbe

router = APIRouter(tags=["system"])


@router.get("/ping", summary='Liveness for load balancers: the JSON string "pong"')
async def ping() -> JSONResponse:
    return JSONResponse("pong")


@router.get("/healthz", summary="Liveness, no I/O")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health", summary="Readiness: every dependency checked; 503 names the failing one")
async def health(request: Request) -> JSONResponse:
    probe: HealthProbe = request.app.state.health
    checks = await probe.checks()
    failing = [name for name, check in checks.items() if check["status"] != "ok"]
    body: dict[str, Any] = {
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
    secret = token.get_secret_value() if token is not None else ""
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
    if secret.strip() and not hmac.compare_digest(
        (authorization or "").encode(), f"Bearer {secret}".encode()
    ):
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
