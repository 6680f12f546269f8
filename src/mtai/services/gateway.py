"""The gateway's request path, shared by the native chat API and the OpenAI-compatible one.

prepare: model chosen and checked, history trimmed to the context window, fallback chain built
-> call (or stream) through the router -> settle: cost from the catalog's prices, one usage
record per request whatever the outcome (ok, error, cancelled).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio

from mtai.context import new_request_id, request_id_var
from mtai.errors import AppError, InvalidInput
from mtai.logging import get_logger
from mtai.providers.cache.stores import CacheStore
from mtai.providers.llm.base import (
    CompletionRequest,
    Delta,
    Message,
    Source,
    StreamEnd,
    StreamEvent,
    ToolCallDelta,
    UpstreamError,
    Usage,
)
from mtai.providers.llm.capabilities import DROPPABLE, refused
from mtai.providers.llm.conversation import (
    Generation,
    ImagePart,
    TextPart,
    ToolCall,
    ToolResult,
    features,
)
from mtai.providers.llm.registry import ProviderRegistry
from mtai.services import tenant_settings, tokenizer
from mtai.services.auth import Authenticator
from mtai.services.catalog import Catalog, ModelSpec
from mtai.services.limits import Admission, Estimate, reserve_tokens
from mtai.services.llm_router import LLMRouter, Target
from mtai.services.metering import Meter, limit_scopes, provider_of
from mtai.services.metrics import Metrics
from mtai.services.principal import Principal, Scope
from mtai.services.retrieval import MAX_QUERY_CHARS, Citation, Retriever, SearchQuery
from mtai.services.usage import PromptLogEntry, UsageLedger, UsageRecord

log = get_logger(__name__)
# What a RAG chat reserves for its sources beyond the passages themselves: the instructions and
# each passage's number, title and heading.
GROUNDING_TOKENS = 120
SOURCE_HEADER_TOKENS = 40


class ContextTooLong(InvalidInput):
    code = "context_length_exceeded"


class UnsupportedParameter(AppError):
    """The request uses something its model cannot honour (see capabilities.py)."""

    status_code = 400
    code = "unsupported_parameter"

    def __init__(self, detail: str, *, param: str) -> None:
        super().__init__(detail)
        self.param = param


DROPPED_HEADER = "X-Mtai-Dropped-Params"
# The request field each canonical feature comes from, for error messages.
_PARAM = {
    "tool_messages": "messages",
    "image_data": "messages",
    "image_url": "messages",
    "logprobs": "logprobs",
}


def param_of(feature: str) -> str:
    return _PARAM.get(feature, feature.split(".")[0])


def _without(generation: Generation, dropped: Sequence[str]) -> Generation:
    """`generation` with the droppable settings `dropped` unset."""
    changes: dict[str, Any] = {}
    for name in dropped:
        if name == "stop":
            changes["stop"] = ()
        elif name == "logprobs":
            changes |= {"logprobs": False, "top_logprobs": None}
        else:
            changes[name] = None
    return dataclasses.replace(generation, **changes)


def check_conversation(messages: Sequence[Message]) -> None:
    """What every upstream requires of a conversation, checked once for every ingress: it
    ends with something to answer, and each tool result answers a call of the assistant
    message before it."""
    if not messages:
        raise InvalidInput("The conversation is empty; send at least one user message.")
    last = messages[-1]
    if last.role == "assistant":
        raise InvalidInput(
            "The last message is the assistant's; end with a user message or tool results."
        )
    if last.role in ("user", "system") and not (last.content.strip() or last.images):
        raise InvalidInput("The last message is empty; send a question.")
    calls: set[str] = set()  # the open calls of the last assistant message
    for index, message in enumerate(messages):
        if message.role == "tool":
            for result in message.tool_results:
                if result.call_id not in calls:
                    raise InvalidInput(
                        f"messages[{index}] answers tool call '{result.call_id}', which the "
                        "assistant message before it did not make (or another result answered)."
                    )
                calls.discard(result.call_id)
            continue
        if calls:
            # Every upstream refuses a conversation that moves on with calls unanswered.
            raise InvalidInput(
                f"messages[{index}] follows tool calls that have no result: "
                f"{', '.join(sorted(calls))}. Send a tool message for each call first."
            )
        calls = {call.id for call in message.tool_calls} if message.role == "assistant" else set()
    if calls:
        raise InvalidInput(
            f"The tool calls {', '.join(sorted(calls))} have no result; send a tool message "
            "for each call."
        )


class StreamInterrupted(AppError):
    """The upstream failed after output had started; the client already has part of it."""

    status_code = 502
    code = "upstream_error"


@dataclass(frozen=True)
class RagOptions:
    collection_ids: list[uuid.UUID] | None  # None: every knowledge base of the tenant
    top_k: int


@dataclass(frozen=True)
class ChatInput:
    messages: list[Message]  # the whole conversation, newest last
    model: str | None = None
    max_tokens: int | None = None
    generation: Generation = field(default_factory=Generation)
    sources: list[Source] = field(default_factory=list)
    use_cache: bool = False  # the caller asks for the response cache (non-streaming only)
    rag: RagOptions | None = None  # ground the answer in the tenant's documents (once admitted)
    drop_params: bool = False  # drop settings the model cannot honour (LiteLLM's convention)


@dataclass(frozen=True)
class Prepared:
    principal: Principal
    primary: ModelSpec
    targets: list[Target]
    messages: list[Message]
    max_tokens: int | None
    generation: Generation
    sources: list[Source]
    prompt_log_days: int | None
    api: str
    request_id: str
    started: float
    admission: Admission | None = None
    cache_key: str | None = None
    cache_ttl: int = 0
    citations: list[Citation] = field(default_factory=list)
    retrieval_tokens: int = 0  # the question's embedding, when the answer is grounded
    retrieval_cost: Decimal = Decimal(0)
    dropped: tuple[str, ...] = ()  # settings dropped because the model cannot honour them


@dataclass(frozen=True)
class Outcome:
    text: str
    model: ModelSpec
    usage: Usage
    cost_usd: Decimal
    latency_ms: int
    ttft_ms: int | None
    finish_reason: str
    request_id: str
    cached: bool = False
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Any = None

    @property
    def prompt_tokens(self) -> int:
        return self.usage.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.usage.completion_tokens


def cache_owner(principal: Principal, *, shared: bool) -> str:
    """Whose cache entries a request reads and writes: its own principal's (a user or an API
    key), or the whole tenant's when the tenant opted into sharing (`cache_shared`)."""
    if shared:
        return "tenant"
    actor_type, actor_id = principal.actor
    return f"{actor_type}:{actor_id}"


def cache_key(
    tenant_id: uuid.UUID,
    owner: str,
    model: str,
    messages: list[Message],
    max_tokens: int | None,
    generation: Generation,
) -> str:
    """Tenant-namespaced and per owner (see `cache_owner`); the same key only for the same
    model, messages (every part) and every setting that shapes the answer."""
    material = json.dumps(
        {
            "owner": owner,
            "model": model,
            "messages": [[m.role, [_part_json(p) for p in m.parts]] for m in messages],
            "max_tokens": max_tokens,
            "generation": dataclasses.asdict(generation),
        },
        separators=(",", ":"),
        sort_keys=True,
        default=str,
    )
    return f"mtai:cache:{{{tenant_id}}}:{hashlib.sha256(material.encode()).hexdigest()}"


def _part_json(part: TextPart | ImagePart | ToolCall | ToolResult) -> dict[str, Any]:
    """A part as JSON, its kind named (a text and a tool result of the same words differ)."""
    return {"kind": type(part).__name__, **dataclasses.asdict(part)}


def message_json(message: Message) -> dict[str, Any]:
    """A message as prompt logs keep it: the text alone when that is all it holds."""
    if all(isinstance(p, TextPart) for p in message.parts):
        return {"role": message.role, "content": message.content}
    return {"role": message.role, "parts": [_part_json(p) for p in message.parts]}


def cache_status(prepared: Prepared, outcome: Outcome) -> str | None:
    """ "hit" or "miss" for `X-Mtai-Cache`, shown only to admin-scoped callers: to anyone else
    a hit would tell what others in the tenant asked."""
    if prepared.cache_key is None or Scope.ADMIN not in prepared.principal.scopes:
        return None
    return "hit" if outcome.cached else "miss"


def output_tokens(spec: ModelSpec, asked: int | None, essential: int) -> int:
    """The output limit a model of the chain gets: what was asked, within its own limits."""
    wanted = min(asked or spec.max_output_tokens, spec.max_output_tokens)
    return max(1, min(wanted, spec.context_window - essential))


def chain_estimate(
    targets: list[Target], prompt: int, essential: int, asked: int | None
) -> Estimate:
    """The worst case over the whole fallback chain: each model reads the history trimmed to
    its own window and writes up to its own output limit, so a fallback with a larger window
    or output limit can cost far more than the primary."""
    tokens, cost = 0, Decimal(0)
    for target in targets:
        spec = target.spec
        out = output_tokens(spec, asked, essential)
        reserved = reserve_tokens(min(prompt, max(0, spec.context_window - out)), 0)
        tokens = max(tokens, reserved + out)
        cost = max(cost, spec.cost(reserved, out))
    return Estimate(tokens=tokens, cost_usd=cost)


def _cache_entry(outcome: Outcome) -> str:
    return json.dumps(
        {
            "text": outcome.text,
            "model": outcome.model.name,
            "usage": dataclasses.asdict(outcome.usage),
            "finish_reason": outcome.finish_reason,
            "tool_calls": [dataclasses.asdict(c) for c in outcome.tool_calls],
            "logprobs": outcome.logprobs,
        }
    )


def essential_tokens(messages: list[Message]) -> int:
    """What no trimming can remove: the system messages and the last exchange."""
    system = [m for m in messages if m.role == "system"]
    units = tokenizer.exchanges(messages)
    return tokenizer.count_messages(system + (units[-1] if units else []))


def question_of(messages: list[Message]) -> Message:
    """The message retrieval searches for: the newest user message (an agent's turn may end
    with tool results)."""
    return next((m for m in reversed(messages) if m.role == "user"), messages[-1])


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
        metrics: Metrics,
        cache: CacheStore,
        *,
        meter: Meter,
        retriever: Retriever,
        source_tokens: int,
    ) -> None:
        """`source_tokens`: the most tokens one retrieved passage holds (the chunk size)."""
        self.cache = cache
        self.meter = meter
        self.retriever = retriever
        self.source_tokens = source_tokens
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
        """Authorise, check what the request uses against its models, admit (limits and
        budgets, at the fallback chain's worst case), and only then ground in the tenant's
        documents: a refused request costs no upstream call and no retrieval."""
        principal.require_scope(Scope.CHAT)
        if chat.rag is not None:
            principal.require_scope(Scope.RAG_READ)
        check_conversation(chat.messages)
        tenant_id = principal.require_tenant()
        settings = await self.auth.tenant_settings(tenant_id)
        spec = await self.catalog.resolve(settings, chat.model)
        if chat.max_tokens is not None and chat.max_tokens > spec.max_output_tokens:
            raise InvalidInput(
                f"max_tokens {chat.max_tokens} exceeds {spec.name}'s limit of "
                f"{spec.max_output_tokens} output tokens; ask for fewer."
            )
        settings_tokens = tokenizer.count_settings(chat.generation)
        essential = essential_tokens(chat.messages) + settings_tokens
        needed = essential + (chat.max_tokens or 1)
        if needed > spec.context_window:
            raise ContextTooLong(
                f"The message and max_tokens need {needed} tokens but {spec.name} holds "
                f"{spec.context_window}; shorten the message or lower max_tokens."
            )
        chain = [
            Target(s, endpoint, self.registry.get(endpoint))
            for s in await self.catalog.chain(settings, spec)
            for endpoint in [await self.catalog.endpoint(tenant_id, s)]
        ]
        generation, dropped, targets = self._fit(chain, chat)
        policy = tenant_settings.parse(settings)
        prompt = tokenizer.count_messages(chat.messages) + settings_tokens
        query: SearchQuery | None = None
        retrieval_model, retrieval_tokens, retrieval_cost = "", 0, Decimal(0)
        if chat.rag is not None:
            query = self._rag_query(chat.messages, chat.rag)
            retrieval_model, retrieval_tokens = self.retriever.query_tokens(query)
            retrieval_cost = await self.meter.embedding_cost(retrieval_model, retrieval_tokens)
            prompt += GROUNDING_TOKENS + chat.rag.top_k * (
                self.source_tokens + SOURCE_HEADER_TOKENS
            )
        worst = chain_estimate(targets, prompt, essential, chat.max_tokens)
        estimate = Estimate(worst.tokens + retrieval_tokens, worst.cost_usd + retrieval_cost)
        admission = await self.meter.admit(
            principal, estimate, limit_scopes(principal, policy.limits)
        )
        messages, sources, cited = chat.messages, chat.sources, []
        if chat.rag is not None:
            try:
                grounded = await self.retriever.ground(
                    principal,
                    chat.messages,
                    collection_ids=chat.rag.collection_ids,
                    top_k=chat.rag.top_k,
                )
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await admission.settle(0, Decimal(0))
                raise
            messages, sources, cited = grounded.messages, grounded.sources, grounded.citations
        request_id = request_id_var.get() or new_request_id()
        if chat.rag is not None:
            self._record_retrieval(
                principal, request_id, retrieval_model, retrieval_tokens, retrieval_cost
            )
        return Prepared(
            principal=principal,
            primary=spec,
            targets=targets,
            messages=messages,
            max_tokens=chat.max_tokens,
            generation=generation,
            sources=sources,
            prompt_log_days=policy.prompt_log_retention_days if policy.log_prompts else None,
            api=api,
            request_id=request_id,
            started=time.perf_counter(),
            admission=admission,
            cache_key=cache_key(
                tenant_id,
                cache_owner(principal, shared=policy.cache_shared),
                spec.name,
                messages,
                chat.max_tokens,
                generation,
            )
            if chat.use_cache and policy.cache_enabled
            else None,
            cache_ttl=policy.cache_ttl_seconds,
            citations=cited,
            retrieval_tokens=retrieval_tokens,
            retrieval_cost=retrieval_cost,
            dropped=tuple(dropped),
        )

    @staticmethod
    def _fit(chain: list[Target], chat: ChatInput) -> tuple[Generation, list[str], list[Target]]:
        """What the request keeps of its settings, and the models of the chain that honour all
        of it. The requested model refuses with a 400 naming the first thing it cannot do
        (unless that is droppable and dropping was asked for, by the request or the model's
        catalog entry); a fallback that cannot do everything is left out of the chain, so a
        failover never quietly gives less."""
        primary = chain[0]
        used = features(chat.messages, chat.generation)
        cannot = refused(primary.provider.support, used, primary.spec.capabilities)
        dropped: list[str] = []
        if cannot:
            drop = chat.drop_params or primary.spec.drop_params
            kept = [f for f in cannot if not (drop and f in DROPPABLE)]
            if kept:
                feature = kept[0]
                raise UnsupportedParameter(
                    f"'{param_of(feature)}' ({feature}) is not supported by model "
                    f"'{primary.spec.name}' (provider {primary.spec.provider}). Remove it, "
                    "choose a model that supports it (GET /v1/models lists capabilities), or "
                    "send drop_params: true to drop settings the model cannot honour.",
                    param=param_of(feature),
                )
            dropped = cannot
        generation = _without(chat.generation, dropped)
        used = features(chat.messages, generation)
        targets = [primary] + [
            t for t in chain[1:] if not refused(t.provider.support, used, t.spec.capabilities)
        ]
        return generation, dropped, targets

    @staticmethod
    def dropped_header(prepared: Prepared) -> dict[str, str]:
        """The response header naming what was dropped (nothing when nothing was)."""
        if not prepared.dropped:
            return {}
        return {DROPPED_HEADER: ", ".join(param_of(f) for f in prepared.dropped)}

    @staticmethod
    def _rag_query(messages: list[Message], rag: RagOptions) -> SearchQuery:
        return SearchQuery(
            query=question_of(messages).content[:MAX_QUERY_CHARS],
            limit=rag.top_k,
            collection_ids=rag.collection_ids,
        )

    def _record_retrieval(
        self, principal: Principal, request_id: str, model: str, tokens: int, cost: Decimal
    ) -> None:
        """A grounded answer's retrieval gets a ledger row of its own, beside the answer's."""
        self.ledger.record(
            UsageRecord.for_principal(
                principal,
                request_id=f"{request_id}.retrieval",
                model=model,
                provider=provider_of(model),
                prompt_tokens=tokens,
                completion_tokens=0,
                cost_usd=cost,
                latency_ms=0,
                ttft_ms=None,
                status="ok",
                error_code=None,
                api="rag_search",
                created_at=datetime.now(UTC),
            )
        )

    @staticmethod
    async def release(prepared: Prepared, outcome: Outcome | None) -> None:
        """Hand back what the request reserved, keeping what it really used."""
        if prepared.admission is not None:
            used = outcome.prompt_tokens + outcome.completion_tokens if outcome else 0
            cost = outcome.cost_usd if outcome else Decimal(0)
            await prepared.admission.settle(
                used + prepared.retrieval_tokens, cost + prepared.retrieval_cost
            )

    @staticmethod
    def _request_for(prepared: Prepared, target: Target) -> CompletionRequest:
        """Each model in the chain gets the history trimmed to its own context window."""
        spec = target.spec
        settings_tokens = tokenizer.count_settings(prepared.generation)
        essential = essential_tokens(prepared.messages) + settings_tokens
        max_tokens = output_tokens(spec, prepared.max_tokens, essential)
        window = spec.context_window - max_tokens - settings_tokens
        return CompletionRequest(
            model=spec.upstream_model,
            messages=tokenizer.trim_to_fit(prepared.messages, window),
            max_tokens=max_tokens,
            generation=prepared.generation,
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
        tool_calls: tuple[ToolCall, ...] = (),
        logprobs: Any = None,
    ) -> Outcome:
        if usage is not None and min(dataclasses.astuple(usage)) < 0:
            # Never a refund: an upstream that reports negative usage is not believed.
            log.warning(
                "upstream.negative_usage",
                model=spec.name,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
            usage = None
        if usage is None:  # the upstream did not say (extractive, cut-off stream): count ourselves
            prompt = tokenizer.count_messages(request.messages) if request is not None else 0
            if request is not None:
                prompt += tokenizer.count_settings(request.generation)
            written = tokenizer.count(text) + sum(
                tokenizer.count(c.name) + tokenizer.count(c.arguments) for c in tool_calls
            )
            usage = Usage(prompt if status != "error" else 0, written)
        cost = Decimal(0) if cached else spec.cost_of(usage)
        outcome = Outcome(
            text=text,
            model=spec,
            usage=usage,
            cost_usd=cost,
            latency_ms=_elapsed_ms(prepared.started),
            ttft_ms=ttft_ms,
            finish_reason=finish_reason,
            request_id=prepared.request_id,
            cached=cached,
            tool_calls=tool_calls,
            logprobs=logprobs,
        )
        log_entry = None
        if prepared.prompt_log_days is not None and request is not None:
            log_entry = PromptLogEntry(
                prompt=[message_json(m) for m in request.messages],
                response=text,
                retention_days=prepared.prompt_log_days,
                tool_calls=[dataclasses.asdict(c) for c in tool_calls],
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
                cached_read_tokens=usage.cached_read_tokens,
                cached_write_tokens=usage.cached_write_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                tool_calls=len(tool_calls),
                end_user=prepared.generation.user,
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

    async def _settle_cancelled(self, prepared: Prepared) -> None:
        """The request was cancelled while the upstream was called (a shutdown, a server that
        cancels on disconnect): recorded as cancelled with its prompt counted, and the admission
        handed back now rather than when its lease runs out."""
        outcome = self.settle(
            prepared,
            prepared.primary,
            text="",
            usage=None,
            request=self._request_for(prepared, prepared.targets[0]),
            status="cancelled",
            error_code="cancelled",
            ttft_ms=None,
            finish_reason="cancelled",
        )
        with anyio.CancelScope(shield=True):
            await self.release(prepared, outcome)

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
        except BaseException:
            await self._settle_cancelled(prepared)
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
            tool_calls=completion.tool_calls,
            logprobs=completion.logprobs,
        )
        await self.release(prepared, outcome)
        if prepared.cache_key is not None and outcome.finish_reason in (
            "stop",
            "length",
            "tool_calls",
        ):
            await self.cache.set(prepared.cache_key, _cache_entry(outcome), prepared.cache_ttl)
        return outcome

    async def _from_cache(self, prepared: Prepared) -> Outcome | None:
        """A stored answer to the identical request: free, and marked as cached."""
        if prepared.cache_key is None:
            return None
        raw = await self.cache.get(prepared.cache_key)
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            usage = Usage(**entry["usage"])
            calls = tuple(ToolCall(**c) for c in entry["tool_calls"])
        except (ValueError, KeyError, TypeError):
            return None  # written by an older version: answered afresh, then overwritten
        by_name = {t.spec.name: t.spec for t in prepared.targets}
        spec = by_name.get(entry["model"], prepared.primary)
        outcome = self.settle(
            prepared,
            spec,
            text=entry["text"],
            usage=usage,
            request=None,
            status="ok",
            error_code=None,
            ttft_ms=_elapsed_ms(prepared.started),
            finish_reason=entry["finish_reason"],
            cached=True,
            tool_calls=calls,
            logprobs=entry.get("logprobs"),
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
        except BaseException:
            await self._settle_cancelled(prepared)
            raise
        return StreamSession(self, prepared, target, first, rest)


class StreamSession:
    """One streamed answer: iterate `events()`; `outcome` is set once it has ended, however."""

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

    async def events(self) -> AsyncGenerator[Delta | ToolCallDelta, None]:
        """The answer as it comes: text pieces and tool-call pieces."""
        calls = _ToolCallAssembler()
        parts: list[str] = []
        usage: Usage | None = None
        finish, status, error_code, ttft = "stop", "cancelled", None, None
        try:
            async for event in self._events():
                if isinstance(event, StreamEnd):
                    usage, finish = event.usage, event.finish_reason
                    continue
                ttft = ttft if ttft is not None else _elapsed_ms(self.prepared.started)
                if isinstance(event, Delta):
                    parts.append(event.text)
                else:
                    calls.add(event)
                yield event
            status = "ok"
        except (UpstreamError, TimeoutError) as exc:
            status, error_code = "error", "upstream_error"
            raise StreamInterrupted(f"The upstream failed mid-answer: {exc}") from exc
        finally:
            await self._finish(parts, usage, finish, status, error_code, ttft, calls.done())

    async def aclose(self) -> None:
        """Ends a session whose `events()` never ran (the client left before the answer's
        first byte): the upstream stream is closed, the call recorded as cancelled, and the
        admission released. Nothing once `events()` has ended it."""
        if self.outcome is not None:
            return
        first = self._first
        parts = [first.text] if isinstance(first, Delta) else []
        await self._finish(parts, None, "cancelled", "cancelled", None, None, ())

    async def _finish(
        self,
        parts: list[str],
        usage: Usage | None,
        finish: str,
        status: str,
        error_code: str | None,
        ttft: int | None,
        tool_calls: tuple[ToolCall, ...],
    ) -> None:
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
            tool_calls=tool_calls,
        )
        with anyio.CancelScope(shield=True):
            await Gateway.release(self.prepared, self.outcome)


class _ToolCallAssembler:
    """Puts streamed tool-call pieces back together, for the ledger and the outcome."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[str, str, list[str]]] = {}

    def add(self, delta: ToolCallDelta) -> None:
        call_id, name, pieces = self._calls.get(delta.index, ("", "", []))
        self._calls[delta.index] = (delta.id or call_id, delta.name or name, pieces)
        pieces.append(delta.arguments)

    def done(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(call_id, name, "".join(pieces))
            for _, (call_id, name, pieces) in sorted(self._calls.items())
        )
