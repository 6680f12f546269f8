"""create_app(settings): the FastAPI application, with its resources opened in the lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mtai import __version__
from mtai.api import errors
from mtai.api.middleware import RequestContextMiddleware
from mtai.api.routers import (
    admin,
    anthropic_api,
    auth,
    chat,
    credentials,
    invitations,
    keys,
    limits,
    models_admin,
    openai_api,
    rag,
    rerank_api,
    responses_api,
    scim,
    sso,
    system,
    tenants,
    ui,
    users,
)
from mtai.config import Settings, get_settings, metrics_problem
from mtai.errors import ConfigurationError
from mtai.logging import configure_logging
from mtai.runtime import open_runtime
from mtai.services.health import HealthProbe


def refuse_unsafe(settings: Settings) -> None:
    """Raise ConfigurationError if serving the API with these settings would be unsafe."""
    problem = metrics_problem(settings)
    if problem is not None:
        raise ConfigurationError(f"Refusing to start in production: {problem}.")


# The gateway's chat APIs: their bodies carry images inline, so they get a limit of their own.
CHAT_PATHS = (
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    refuse_unsafe(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            app.state.health = HealthProbe(
                runtime.db,
                runtime.limits,
                runtime.store,
                queue_backend=runtime.queue.name,
                cache_seconds=settings.health_cache_seconds,
            )
            # What start-up allocated lives as long as the process: moving it out of the
            # collector's reach makes full collections short (175-315 ms each under load
            # before; the chief cause of the gateway's p99, docs/benchmarks.md).
            gc.collect()
            gc.freeze()
            yield

    app = FastAPI(
        title="mtai",
        version=__version__,
        description="Multi-tenant AI platform: isolated chat, RAG and administration.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_request_bytes,
        upload_paths={
            rag.DOCUMENTS_PATH: settings.max_upload_bytes + rag.FORM_OVERHEAD_BYTES,
            **dict.fromkeys(
                CHAT_PATHS, max(settings.max_chat_request_bytes, settings.max_request_bytes)
            ),
        },
    )
    for router in (
        system.router,
        auth.router,
        tenants.router,
        users.router,
        users.identities_router,
        invitations.router,
        sso.router,
        scim.router,
        keys.router,
        admin.router,
        models_admin.router,
        credentials.router,
        limits.router,
        chat.router,
        rag.router,
        anthropic_api.router,
        openai_api.router,
        responses_api.router,
        rerank_api.router,
        ui.router,
    ):
        app.include_router(router)
    return app
