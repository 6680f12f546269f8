"""Prometheus metrics: requests, latency, tokens, cost, limit refusals, cache hits.

Label sets are bounded: models come from the catalog, and at most `max_tenants` distinct
tenant ids are labelled per process (later ones count as "other"), so a platform with many
tenants cannot blow up the time-series database. Metrics are per process; Prometheus sums them.
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

OTHER = "other"


class Metrics:
    def __init__(self, max_tenants: int = 200) -> None:
        self.registry = CollectorRegistry()
        self.max_tenants = max_tenants
        self._tenants: set[str] = set()
        self.requests = Counter(
            "mtai_gateway_requests",
            "Gateway requests by outcome.",
            ["tenant", "model", "status", "api"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mtai_gateway_latency_seconds",
            "Gateway request latency, upstream included.",
            ["model"],
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )
        self.tokens = Counter(
            "mtai_gateway_tokens",
            "Tokens by kind.",
            ["tenant", "model", "kind"],
            registry=self.registry,
        )
        self.cost = Counter(
            "mtai_gateway_cost_usd", "Cost in USD.", ["tenant", "model"], registry=self.registry
        )
        self.refusals = Counter(
            "mtai_limit_refusals",
            "Requests refused by rate limits and budgets.",
            ["tenant", "reason"],
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "mtai_cache_hits",
            "Responses served from the response cache.",
            ["tenant"],
            registry=self.registry,
        )

    def tenant(self, tenant_id: object) -> str:
        label = str(tenant_id)
        if label in self._tenants:
            return label
        if len(self._tenants) < self.max_tenants:
            self._tenants.add(label)
            return label
        return OTHER

    def observe(
        self,
        *,
        tenant_id: object,
        model: str,
        status: str,
        api: str,
        latency_seconds: float,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: Decimal,
    ) -> None:
        tenant = self.tenant(tenant_id)
        self.requests.labels(tenant, model, status, api).inc()
        self.latency.labels(model).observe(latency_seconds)
        self.tokens.labels(tenant, model, "prompt").inc(prompt_tokens)
        self.tokens.labels(tenant, model, "completion").inc(completion_tokens)
        self.cost.labels(tenant, model).inc(float(cost_usd))

    def refused(self, tenant_id: object, reason: str) -> None:
        self.refusals.labels(self.tenant(tenant_id), reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
