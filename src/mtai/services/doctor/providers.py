"""Doctor check of the model catalog's providers: credentials present, and with `--call`, a
one-token completion through the same adapters the gateway uses."""

from __future__ import annotations

import asyncio
import importlib.util

from aiobotocore.session import get_session

from mtai.config import Settings
from mtai.db.engine import Database
from mtai.providers.llm.base import CompletionRequest, Message, UpstreamError
from mtai.providers.llm.registry import DEFAULT_BASE_URLS, Endpoint, ProviderRegistry
from mtai.services import secrets
from mtai.services.auth_cache import AuthCache
from mtai.services.catalog import EXTRACTIVE, Catalog, ModelSpec
from mtai.services.crypto import SecretBox
from mtai.services.doctor.result import CheckResult


async def catalog(settings: Settings, url: str) -> list[ModelSpec]:
    """The enabled models; raises ConfigurationError when the secrets cannot be resolved."""
    resolved = secrets.resolve(settings)
    db = Database(
        url,
        app_role=settings.db_app_role,
        platform_url=settings.platform_database_url,
        pool_size=1,
        platform_pool_size=1,
    )
    catalog = Catalog(
        db, AuthCache(0), SecretBox(resolved.encryption_key), default_model=settings.default_model
    )
    try:
        return [m for m in (await catalog.models()).values() if m.enabled]
    finally:
        await db.dispose()


async def _missing_credentials(spec: ModelSpec) -> str | None:
    """Why this model cannot authenticate, or None. Tenants may still bring their own keys."""
    if spec.provider in ("openai", "anthropic"):
        official = (spec.base_url or DEFAULT_BASE_URLS[spec.provider]).startswith(
            DEFAULT_BASE_URLS[spec.provider]
        )
        if official and spec.api_key is None:
            return (
                "no platform API key: only tenants with their own "
                f"{spec.provider} credential can use it"
            )
    if (
        spec.provider == "bedrock"
        and spec.api_key is None
        and await get_session().get_credentials() is None
    ):
        return "no AWS credentials found (task role, environment or profile)"
    if spec.provider == "local" and importlib.util.find_spec("llama_cpp") is None:
        return "the local model runtime is not installed: pip install 'mtai[local]'"
    return None


async def _call(registry: ProviderRegistry, spec: ModelSpec) -> str | None:
    endpoint = Endpoint(
        spec.provider,
        spec.base_url,
        spec.api_key,
        spec.region,
        spec.context_window,
        spec.timeout_seconds,
    )
    request = CompletionRequest(
        model=spec.upstream_model, messages=[Message("user", "ping")], max_tokens=1
    )
    try:
        await asyncio.wait_for(registry.get(endpoint).complete(request), spec.timeout_seconds)
    except UpstreamError as exc:
        return exc.explained  # the operator's own check: the upstream's words included
    except TimeoutError:
        return f"no answer within {spec.timeout_seconds:.0f} s"
    return None


async def check(settings: Settings, models: list[ModelSpec], *, call: bool) -> list[CheckResult]:
    specs = [s for s in models if s.provider != EXTRACTIVE]
    if not specs:
        return [
            CheckResult(
                "models",
                True,
                "no model in the catalog: chat answers with the extractive answerer",
            )
        ]
    registry = ProviderRegistry(
        local_model_path=settings.local_model_path, local_threads=settings.local_model_threads
    )
    results = []
    try:
        for spec in specs:
            name = f"model {spec.name}"
            problem = await _missing_credentials(spec)
            if problem is not None:
                results.append(
                    CheckResult(
                        name,
                        False,
                        f"{spec.provider}: {problem}",
                        "give the model an API key (PUT /api/v1/admin/models/NAME) or remove it",
                    )
                )
                continue
            if not call:
                results.append(CheckResult(name, True, f"{spec.provider}: credentials present"))
                continue
            failure = await _call(registry, spec)
            results.append(
                CheckResult(name, True, f"{spec.provider}: a one-token call answered")
                if failure is None
                else CheckResult(
                    name,
                    False,
                    f"{spec.provider}: {failure}",
                    "check the model's base URL, API key and upstream model id; the upstream's "
                    "own message is above",
                )
            )
    finally:
        await registry.aclose()
    return results
