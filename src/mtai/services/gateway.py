"""The gateway's request path, shared by the native chat API and the OpenAI-compatible one.

prepare: model chosen and checked, history trimmed to the context window, fallback chain built
-> call (or stream) through the router -> settle: cost from the catalog's prices, one usage
record per request whatever the outcome (ok, error, cancelled).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

import anyio

from mtai.context import request_id_var
from mtai.errors import AppError, InvalidInput
from mtai.providers.cache.stores import CacheStore
from mtai.providers.llm.base import (
    CompletionRequest,
    Delta,
    Message,
    Source,
    StreamEnd,
    StreamEvent,
    UpstreamError,
    Usage,
)
from mtai.providers.llm.registry import ProviderRegistry
from mtai.services import tenant_settings, tokenizer
from mtai.services.auth import Authenticator
from mtai.services.catalog import Catalog, ModelSpec
from mtai.services.limits import (
    Admission,
    BudgetExceeded,
    Estimate,
    LimitService,
    LimitSettings,
    RateLimited,
    reserve_tokens,
)
from mtai.services.limits import Scope as LimitScope
from mtai.services.llm_router import LLMRouter, Target
from mtai.services.metrics import Metrics
from mtai.services.principal import Principal, Scope
from mtai.services.usage import PromptLogEntry, UsageLedger, UsageRecord


class ContextTooLong(InvalidInput):
    code = "context_length_exceeded"


class StreamInterrupted(AppError):
    """The upstream failed after output had started; the client already has part of it."""

    status_code = 502
    code = "upstream_error"


@dataclass(frozen=True)
class ChatInput:
    messages: list[Message]  # the whole conversation, newest last
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    sources: list[Source] = field(default_factory=list)
    use_cache: bool = False  # the caller asks for the response cache (non-streaming only)


@dataclass(frozen=True)
class Prepared:
    principal: Principal
    primary: ModelSpec
    targets: list[Target]
    messages: list[Message]
    max_tokens: int | None
    temperature: float | None
    sources: list[Source]
    prompt_log_days: int | None
    api: str
    request_id: str
    started: float
    admission: Admission | None = None
    cache_key: str | None = None
    cache_ttl: int = 0


@dataclass(frozen=True)
class Outcome:
    text: str
    model: ModelSpec
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    latency_ms: int
    ttft_ms: int | None
    finish_reason: str
    request_id: str
    cached: bool = False


def cache_key(tenant_id: uuid.UUID, model: str, chat: ChatInput) -> str:
    """Tenant-namespaced; identical model, messages and sampling settings give the same key."""
    material = json.dumps(
        {
            "model": model,
            "messages": [[m.role, m.content] for m in chat.messages],
            "temperature": chat.temperature,
            "max_tokens": chat.max_tokens,
        },
        separators=(",", ":"),
    )
    return f"mtai:cache:{{{tenant_id}}}:{hashlib.sha256(material.encode()).hexdigest()}"


def _cache_entry(outcome: Outcome) -> str:
    return json.dumps(
        {
            "text": outcome.text,
            "model": outcome.model.name,
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "finish_reason": outcome.finish_reason,
        }
    )


def _elapsed_ms(since: float) -> int:
    return int((time.perf_counter() - since) * 1000)


class Gateway:
    def __init__(
        self,
        auth: Authenticator,
        catalog: Catalog,
        registry: ProviderRegistry,
        router: LLMRouter,
        ledger: UsageLedger,
        limits: LimitService,
        metrics: Metrics,
        cache: CacheStore,
    ) -> None:
        self.cache = cache
        self.limits = limits
        self.metrics = metrics
        self.auth = auth
        self.catalog = catalog
        self.registry = registry
        self.router = router
        self.ledger = ledger

    async def models_for(self, principal: Principal) -> list[ModelSpec]:
        settings = await self.auth.tenant_settings(principal.require_tenant())
        return await self.catalog.allowed(settings)

    async def default_model_for(self, principal: Principal) -> str | None:
        settings = await self.auth.tenant_settings(principal.require_tenant())
        try:
            return (await self.catalog.resolve(settings, None)).name
        except AppError:
            return None

    async def prepare(self, principal: Principal, chat: ChatInput, *, api: str) -> Prepared:
        principal.require_scope(Scope.CHAT)
        tenant_id = principal.require_tenant()
        settings = await self.auth.tenant_settings(tenant_id)
        spec = await self.catalog.resolve(settings, chat.model)
        if chat.max_tokens is not None and chat.max_tokens > spec.max_output_tokens:
            raise InvalidInput(
                f"max_tokens {chat.max_tokens} exceeds {spec.name}'s limit of "
                f"{spec.max_output_tokens} output tokens; ask for fewer."
            )
        essential = [m for m in chat.messages if m.role == "system"] + chat.messages[-1:]
        needed = tokenizer.count_messages(essential) + (chat.max_tokens or 1)
        if needed > spec.context_window:
            raise ContextTooLong(
                f"The message and max_tokens need {needed} tokens but {spec.name} holds "
                f"{spec.context_window}; shorten the message or lower max_tokens."
            )
        targets = [
            Target(s, endpoint, self.registry.get(endpoint))
            for s in await self.catalog.chain(settings, spec)
            for endpoint in [await self.catalog.endpoint(tenant_id, s)]
        ]
        policy = tenant_settings.parse(settings)
        prepared = Prepared(
            principal=principal,
            primary=spec,
            targets=targets,
            messages=chat.messages,
            max_tokens=chat.max_tokens,
            temperature=chat.temperature,
            sources=chat.sources,
            prompt_log_days=policy.prompt_log_retention_days if policy.log_prompts else None,
            api=api,
            request_id=request_id_var.get() or uuid.uuid4().hex,
            started=time.perf_counter(),
            cache_key=cache_key(tenant_id, spec.name, chat)
            if chat.use_cache and policy.cache_enabled
            else None,
            cache_ttl=policy.cache_ttl_seconds,
        )
        scopes = [LimitScope(tenant_id, None, policy.limits)]
        if principal.api_key_id is not None and principal.key_limits:
            key_limits = LimitSettings.model_validate(principal.key_limits)
            scopes.append(LimitScope(tenant_id, principal.api_key_id, key_limits))
        first = self._request_for(prepared, targets[0])
        prompt = reserve_tokens(tokenizer.count_messages(first.messages), 0)
        estimate = Estimate(
            tokens=prompt + first.max_tokens,
            cost_usd=max(t.spec.cost(prompt, first.max_tokens) for t in targets),
        )
        try:
            admission = await self.limits.admit(scopes, estimate, prepared.request_id)
        except (RateLimited, BudgetExceeded) as refusal:
            self.metrics.refused(tenant_id, refusal.code)
            raise
        return replace(prepared, admission=admission)

    @staticmethod
    async def release(prepared: Prepared, outcome: Outcome | None) -> None:
        """Hand back what the request reserved, keeping what it really used."""
        if prepared.admission is not None:
            used = outcome.prompt_tokens + outcome.completion_tokens if outcome else 0
            await prepared.admission.settle(used, outcome.cost_usd if outcome else Decimal(0))

    @staticmethod
    def _request_for(prepared: Prepared, target: Target) -> CompletionRequest:
        """Each model in the chain gets the history trimmed to its own context window."""
        spec = target.spec
        max_tokens = min(prepared.max_tokens or spec.max_output_tokens, spec.max_output_tokens)
        essential = tokenizer.count_messages(
            [m for m in prepared.messages if m.role == "system"] + prepared.messages[-1:]
        )
        max_tokens = max(1, min(max_tokens, spec.context_window - essential))
        return CompletionRequest(
            model=spec.upstream_model,
            messages=tokenizer.trim_to_fit(prepared.messages, spec.context_window - max_tokens),
            max_tokens=max_tokens,
            temperature=prepared.temperature,
            sources=prepared.sources,
        )

    def settle(
        self,
        prepared: Prepared,
        spec: ModelSpec,
        *,
        text: str,
        usage: Usage | None,
        request: CompletionRequest | None,
        status: str,
        error_code: str | None,
        ttft_ms: int | None,
        finish_reason: str,
        cached: bool = False,
    ) -> Outcome:
        if usage is None:  # the upstream did not say (extractive, cut-off stream): count ourselves
            prompt = tokenizer.count_messages(request.messages) if request is not None else 0
            usage = Usage(prompt if status != "error" else 0, tokenizer.count(text))
        cost = Decimal(0) if cached else spec.cost(usage.prompt_tokens, usage.completion_tokens)
        outcome = Outcome(
            text=text,
            model=spec,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=cost,
            latency_ms=_elapsed_ms(prepared.started),
            ttft_ms=ttft_ms,
            finish_reason=finish_reason,
            request_id=prepared.request_id,
            cached=cached,
        )
        log_entry = None
        if prepared.prompt_log_days is not None and request is not None:
            log_entry = PromptLogEntry(
                prompt=[{"role": m.role, "content": m.content} for m in request.messages],
                response=text,
                retention_days=prepared.prompt_log_days,
            )
        self.metrics.observe(
            tenant_id=prepared.principal.tenant_id,
            model=spec.name,
            status=status,
            api=prepared.api,
            latency_seconds=outcome.latency_ms / 1000,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=cost,
        )
        self.ledger.record(
            UsageRecord.for_principal(
                prepared.principal,
                request_id=prepared.request_id,
                model=spec.name,
                provider=spec.provider,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=cost,
                latency_ms=outcome.latency_ms,
                ttft_ms=ttft_ms,
                status=status,
                error_code=error_code,
                api=prepared.api,
                created_at=datetime.now(UTC),
                cached=cached,
                prompt_log=log_entry,
            )
        )
        return outcome

    def _settle_failure(self, prepared: Prepared, error: AppError) -> None:
        """Every attempt failed: recorded against the requested model, nothing charged."""
        self.settle(
            prepared,
            prepared.primary,
            text="",
            usage=Usage(0, 0),
            request=None,
            status="error",
            error_code=error.code,
            ttft_ms=None,
            finish_reason="error",
        )

    async def complete(self, prepared: Prepared) -> Outcome:
        hit = await self._from_cache(prepared)
        if hit is not None:
            return hit
        try:
            target, completion = await self.router.complete(
                prepared.targets, lambda t: self._request_for(prepared, t)
            )
        except AppError as exc:
            self._settle_failure(prepared, exc)
            await self.release(prepared, None)
            raise
        outcome = self.settle(
            prepared,
            target.spec,
            text=completion.text,
            usage=completion.usage,
            request=self._request_for(prepared, target),
            status="ok",
            error_code=None,
            ttft_ms=_elapsed_ms(prepared.started),
            finish_reason=completion.finish_reason,
        )
        await self.release(prepared, outcome)
        if prepared.cache_key is not None and outcome.finish_reason in ("stop", "length"):
            await self.cache.set(prepared.cache_key, _cache_entry(outcome), prepared.cache_ttl)
        return outcome

    async def _from_cache(self, prepared: Prepared) -> Outcome | None:
        """A stored answer to the identical request: free, and marked as cached."""
        if prepared.cache_key is None:
            return None
        raw = await self.cache.get(prepared.cache_key)
        if raw is None:
            return None
        entry = json.loads(raw)
        by_name = {t.spec.name: t.spec for t in prepared.targets}
        spec = by_name.get(entry["model"], prepared.primary)
        outcome = self.settle(
            prepared,
            spec,
            text=entry["text"],
            usage=Usage(entry["prompt_tokens"], entry["completion_tokens"]),
            request=None,
            status="ok",
            error_code=None,
            ttft_ms=_elapsed_ms(prepared.started),
            finish_reason=entry["finish_reason"],
            cached=True,
        )
        self.metrics.cache_hits.labels(self.metrics.tenant(prepared.principal.tenant_id)).inc()
        await self.release(prepared, None)  # nothing was consumed upstream
        return outcome

    async def open_stream(self, prepared: Prepared) -> StreamSession:
        """Chooses the upstream (retries and fallbacks included) before any byte is sent, so a
        failure here is still a plain HTTP error."""
        try:
            target, first, rest = await self.router.open_stream(
                prepared.targets, lambda t: self._request_for(prepared, t)
            )
        except AppError as exc:
            self._settle_failure(prepared, exc)
            await self.release(prepared, None)
            raise
        return StreamSession(self, prepared, target, first, rest)


class StreamSession:
    """One streamed answer: iterate `deltas()`; `outcome` is set once it has ended, however."""

    def __init__(
        self,
        gateway: Gateway,
        prepared: Prepared,
        target: Target,
        first: StreamEvent,
        rest: AsyncGenerator[StreamEvent, None],
    ) -> None:
        self.gateway = gateway
        self.prepared = prepared
        self.target = target
        self.model = target.spec
        self._first: StreamEvent | None = first
        self._rest = rest
        self.outcome: Outcome | None = None

    async def _events(self) -> AsyncGenerator[StreamEvent, None]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        while True:
            try:
                with anyio.fail_after(self.model.timeout_seconds):
                    event = await anext(self._rest)
            except StopAsyncIteration:
                return
            yield event

    async def deltas(self) -> AsyncGenerator[str, None]:
        parts: list[str] = []
        usage: Usage | None = None
        finish, status, error_code, ttft = "stop", "cancelled", None, None
        try:
            async for event in self._events():
                if isinstance(event, Delta):
                    ttft = ttft if ttft is not None else _elapsed_ms(self.prepared.started)
                    parts.append(event.text)
                    yield event.text
                elif isinstance(event, StreamEnd):
                    usage, finish = event.usage, event.finish_reason
            status = "ok"
        except (UpstreamError, TimeoutError) as exc:
            status, error_code = "error", "upstream_error"
            raise StreamInterrupted(f"The upstream failed mid-answer: {exc}") from exc
        finally:
            # Closing the upstream stream is what stops generation there; shielded because a
            # client disconnect arrives here as a cancellation.
            with anyio.CancelScope(shield=True):
                await self._rest.aclose()
            request = Gateway._request_for(self.prepared, self.target)
            if status != "ok":
                usage = None  # what the upstream says comes only at the end: count what was sent
                finish = status
            self.outcome = self.gateway.settle(
                self.prepared,
                self.model,
                text="".join(parts),
                usage=usage,
                request=request,
                status=status,
                error_code=error_code,
                ttft_ms=ttft,
                finish_reason=finish,
            )
            with anyio.CancelScope(shield=True):
                await Gateway.release(self.prepared, self.outcome)
