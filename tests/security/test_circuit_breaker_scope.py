"""Finding 7: one tenant opens a shared circuit breaker for all.

The attack: tenant B sends requests the upstream rejects (a 4xx: too long, bad parameters,
its own bad key) until the breaker of a model every tenant shares opens, and everyone is
turned away for the cool-down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from mtai.providers.llm.base import CompletionRequest, Message
from mtai.providers.llm.registry import Endpoint
from mtai.runtime import Runtime
from mtai.services.circuit_breaker import CircuitBreaker
from mtai.services.llm_router import LLMRouter, Target, UpstreamFailed
from tests.conftest import TenantFixture, add_model
from tests.support.fake_upstreams import Behaviour, FakeUpstream


async def chat(client: httpx.AsyncClient, tenant: TenantFixture, model: str) -> httpx.Response:
    return await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": model}, headers=tenant.owner
    )


async def test_rejected_requests_of_one_tenant_do_not_open_the_shared_breaker(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    fake_upstream.script(spec.upstream_model, *[Behaviour(kind="400")] * 6)
    for _ in range(6):  # more than the breaker's threshold of five
        rejected = await chat(client, tenant_b, spec.name)
        assert rejected.status_code == 400, rejected.text  # the request's fault, not retried
        assert "400" in rejected.json()["detail"]
    answered = await chat(client, tenant_a, spec.name)
    assert answered.status_code == 200, answered.text


async def test_a_tenants_failing_upstream_opens_only_its_own_breaker(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
) -> None:
    """Server-side failures on B's own credential open B's breaker; the platform's stays shut."""
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    put = await client.put(
        "/api/v1/provider-credentials/openai", json={"api_key": "sk-b-own"}, headers=tenant_b.owner
    )
    assert put.status_code == 200
    fake_upstream.script(spec.upstream_model, *[Behaviour(kind="500")] * 5)
    for _ in range(5):
        assert (await chat(client, tenant_b, spec.name)).status_code == 502
    before = fake_upstream.count(spec.upstream_model)
    skipped = await chat(client, tenant_b, spec.name)
    assert skipped.status_code == 503, skipped.text  # B's breaker is open
    assert fake_upstream.count(spec.upstream_model) == before
    assert (await chat(client, tenant_a, spec.name)).status_code == 200


def test_the_breaker_tracks_a_bounded_number_of_upstreams() -> None:
    """A tenant rotating keys (one breaker each) cannot grow a process's memory without end."""
    from mtai.services.circuit_breaker import CircuitBreaker

    breaker = CircuitBreaker(threshold=1, max_keys=3)
    for i in range(10):
        breaker.failure(f"key-{i}")
    assert len(breaker) == 3
    assert not breaker.allow("key-9")  # the most recent ones are kept
    assert breaker.allow("key-0")


def test_a_rejected_probe_does_not_wedge_the_breaker() -> None:
    """A half-open probe answered with a 4xx ends without a verdict: the next request probes."""
    from mtai.services.circuit_breaker import CircuitBreaker

    breaker = CircuitBreaker(threshold=1, cooldown_seconds=0.0)
    breaker.failure("k")
    assert breaker.allow("k")  # the probe
    assert not breaker.allow("k")  # one probe at a time
    breaker.release("k")
    assert breaker.allow("k")


async def test_a_cancelled_probe_does_not_shut_a_shared_model_for_good(
    runtime: Runtime, fake_upstream: FakeUpstream
) -> None:
    """After an outage opens a shared model's breaker, the one request let through to probe
    it is cancelled (its client went away, the server stops it): the next request probes
    again instead of every tenant being turned away for as long as the process lives."""
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    endpoint = Endpoint("openai", spec.base_url, spec.api_key, None, 8192, 30)
    targets = [Target(spec, endpoint, runtime.registry.get(endpoint))]
    router = LLMRouter(CircuitBreaker(threshold=1, cooldown_seconds=0.0))
    request = CompletionRequest(
        model=spec.upstream_model,
        messages=[Message(role="user", content="hi")],
        max_tokens=5,
    )
    fake_upstream.script(
        spec.upstream_model,
        Behaviour(kind="500"),  # the outage opens the breaker
        Behaviour(kind="slow", delay=30),  # the probe, cancelled while it waits
        Behaviour(text="back again"),  # the upstream is back
    )
    with pytest.raises(UpstreamFailed):
        await router.complete(targets, lambda _: request)
    before = len(fake_upstream.requests)
    probe = asyncio.create_task(router.complete(targets, lambda _: request))
    deadline = time.monotonic() + 10
    while len(fake_upstream.requests) == before:
        assert time.monotonic() < deadline, "the probe never reached the upstream"
        await asyncio.sleep(0.02)
    probe.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probe
    _, completion = await router.complete(targets, lambda _: request)
    assert completion.text == "back again"
