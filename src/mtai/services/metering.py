"""Admission and metering for everything that spends compute: chat, embeddings, search, uploads.

Every such request passes the same limiter (services/limits.py): the tenant's limits and, for an
API key, the key's own, with the request's worst case reserved and then settled to what it
really used. Embedding work is recorded in the usage ledger like chat, priced from the catalog
when the operator has given the embedder a price (a catalog entry with the embedder's name).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import anyio

from mtai.context import new_request_id, request_id_var
from mtai.db.repositories import api_keys as keys_repo
from mtai.errors import AppError
from mtai.logging import get_logger
from mtai.services import tenant_settings
from mtai.services.auth import Authenticator
from mtai.services.catalog import Catalog
from mtai.services.limits import (
    Admission,
    BudgetExceeded,
    Estimate,
    LimitService,
    LimitSettings,
    RateLimited,
)
from mtai.services.limits import Scope as LimitScope
from mtai.services.metrics import Metrics
from mtai.services.principal import Principal
from mtai.services.usage import UsageLedger, UsageRecord

log = get_logger(__name__)
# A request whose own size is not known yet (an upload before parsing) still takes one token,
# so a spent token budget refuses it.
MIN_TOKENS = 1


def limit_scopes(principal: Principal, tenant_limits: LimitSettings) -> list[LimitScope]:
    """Whose limits a request passes: its tenant's, and its API key's when it has its own."""
    tenant_id = principal.require_tenant()
    scopes = [LimitScope(tenant_id, None, tenant_limits)]
    if principal.api_key_id is not None and principal.key_limits:
        key_limits = LimitSettings.model_validate(principal.key_limits)
        scopes.append(LimitScope(tenant_id, principal.api_key_id, key_limits))
    return scopes


@dataclass
class Metered:
    """An admitted embedding request; set `tokens` to what it really embedded."""

    tokens: int
    cost_usd: Decimal


_STEP_SUFFIXES = {"rag_chat": ".retrieval", "rag_rerank": ".rerank"}


class Meter:
    def __init__(
        self,
        auth: Authenticator,
        catalog: Catalog,
        limits: LimitService,
        ledger: UsageLedger,
        metrics: Metrics,
    ) -> None:
        self.auth = auth
        self.catalog = catalog
        self.limits = limits
        self.ledger = ledger
        self.metrics = metrics

    async def scopes(self, principal: Principal) -> list[LimitScope]:
        settings = await self.auth.tenant_settings(principal.require_tenant())
        return limit_scopes(principal, tenant_settings.parse(settings).limits)

    async def admit(
        self, principal: Principal, estimate: Estimate, scopes: list[LimitScope] | None = None
    ) -> Admission:
        """Admitted, or refused with 429 before any work is done."""
        tenant_id = principal.require_tenant()
        try:
            return await self.limits.admit(
                scopes if scopes is not None else await self.scopes(principal), estimate
            )
        except (RateLimited, BudgetExceeded) as refusal:
            self.metrics.refused(tenant_id, refusal.code)
            raise

    async def admit_request(self, principal: Principal) -> None:
        """A request that embeds nothing itself now (an upload, a re-embedding): counted for
        rpm and refused once a budget is spent; its embedding is charged when it happens."""
        admission = await self.admit(principal, Estimate(MIN_TOKENS, Decimal(0)))
        await admission.settle(0, Decimal(0))

    async def embedding_cost(self, model: str, tokens: int) -> Decimal:
        """From the catalog entry named like the embedder, if the operator priced it."""
        spec = (await self.catalog.models()).get(model)
        return spec.cost(tokens, 0) if spec is not None else Decimal(0)

    @contextlib.asynccontextmanager
    async def embedding(
        self, principal: Principal, *, model: str, provider: str, tokens: int, api: str
    ) -> AsyncIterator[Metered]:
        """Admit an embedding of `tokens` (the worst case), run the body, settle and record it.

        One ledger row per metered step: the request's own id for the first, a suffixed one
        when a request meters a second step (a RAG chat's retrieval beside its answer)."""
        cost = await self.embedding_cost(model, tokens)
        admission = await self.admit(principal, Estimate(max(MIN_TOKENS, tokens), cost))
        started = time.perf_counter()
        used = Metered(tokens, cost)
        status, error_code = "cancelled", None
        try:
            yield used
            status = "ok"
        except AppError as exc:
            status, error_code = "error", exc.code
            raise
        except Exception:
            status, error_code = "error", "internal_error"
            raise
        finally:
            spent = used.tokens if status == "ok" else 0
            with anyio.CancelScope(shield=True):  # a client gone away still settles
                price = await self.embedding_cost(model, spent) if spent != tokens else cost
                await admission.settle(spent, price)
            self.ledger.record(
                UsageRecord.for_principal(
                    principal,
                    request_id=self._row_id(api),
                    model=model,
                    provider=provider,
                    prompt_tokens=spent,
                    completion_tokens=0,
                    cost_usd=price,
                    latency_ms=int((time.perf_counter() - started) * 1000),
                    ttft_ms=None,
                    status=status,
                    error_code=error_code,
                    api=api,
                    created_at=datetime.now(UTC),
                )
            )

    @staticmethod
    def _row_id(api: str) -> str:
        request_id = request_id_var.get()
        if request_id is None:
            return new_request_id()
        # A RAG chat records its retrieval beside its answer, which takes the request's own id;
        # a reranked search or chat records the reranking beside them.
        return f"{request_id}{_STEP_SUFFIXES.get(api, '')}"

    async def charge_ingestion(
        self,
        *,
        tenant_id: uuid.UUID,
        document_id: uuid.UUID,
        attempt: int,
        created_by: str,
        model: str,
        provider: str,
        tokens: int,
        latency_ms: int,
    ) -> None:
        """A document's embedding, once it is stored: recorded in the ledger and added to the
        tenant's (and the uploading key's) budgets. Idempotent per document attempt."""
        cost = await self.embedding_cost(model, tokens)
        kind, _, actor = created_by.partition(":")
        actor_id = _uuid_or_none(actor)
        user_id = actor_id if kind == "user" else None
        key_id = actor_id if kind == "api_key" else None
        try:
            # Charged before the ledger row exists, so seeding the budget from the ledger
            # cannot count this document twice.
            settings = await self.auth.tenant_settings(tenant_id)
            scopes = [LimitScope(tenant_id, None, tenant_settings.parse(settings).limits)]
            if key_id is not None:  # the uploading key's own budgets, as its requests pass
                async with self.auth.db.tenant(tenant_id) as session:
                    key = await keys_repo.get(session, key_id)
                if key is not None and key.limits:
                    key_limits = LimitSettings.model_validate(key.limits)
                    scopes.append(LimitScope(tenant_id, key_id, key_limits))
            await self.limits.charge(scopes, tokens, cost)
        except Exception:
            # The document is stored; the ledger row below still counts it at the next seeding.
            log.exception("metering.charge_failed", document_id=str(document_id))
        self.ledger.record(
            UsageRecord(
                request_id=f"ingest-{document_id}-{attempt}",
                tenant_id=tenant_id,
                user_id=user_id,
                api_key_id=key_id,
                model=model,
                provider=provider,
                prompt_tokens=tokens,
                completion_tokens=0,
                cost_usd=cost,
                latency_ms=latency_ms,
                ttft_ms=None,
                status="ok",
                error_code=None,
                api="ingestion",
                created_at=datetime.now(UTC),
            )
        )


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def provider_of(model: str) -> str:
    """The ledger's provider column for an embedder name ("openai/...", "bedrock/...")."""
    prefix, slash, _ = model.partition("/")
    return prefix if slash else "local"
