"""`mtai doctor` on Redis, providers and memory: each failure produced for real.

Redis mistakes are made against real servers: the machine's plain Redis, and a TLS-only Redis
started for the tests (the ElastiCache setup). Providers are the fake upstreams speaking the
real wire formats. Database and storage failures are in test_cli.py.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from mtai.config import Settings
from mtai.runtime import Runtime
from mtai.services.catalog import ModelDefinition, ModelSpec
from mtai.services.doctor import memory, redis
from mtai.services.principal import operator
from tests.conftest import add_model, make_settings, run_mtai
from tests.support.fake_upstreams import FakeUpstream
from tests.support.redis_server import free_port


def doctor(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_mtai(settings, "doctor", *args, **env)


def redis_settings(settings: Settings, url: str, **overrides: str) -> Settings:
    assert settings.database_url is not None
    return make_settings(settings.database_url, redis_url=url, **overrides)


async def test_redis_ok_and_unset(settings: Settings, redis_url: str) -> None:
    ok = await redis.check(redis_settings(settings, redis_url))
    assert ok.ok, ok
    assert "PING answered" in ok.message
    unset = await redis.check(settings)
    assert unset.ok
    assert "per process" in unset.message
    queue = await redis.check(settings.model_copy(update={"queue_backend": "redis"}))
    assert not queue.ok
    assert "REDIS_URL" in queue.fix


async def test_redis_wrong_port_is_unreachable(settings: Settings) -> None:
    result = await redis.check(redis_settings(settings, f"redis://127.0.0.1:{free_port()}/0"))
    assert not result.ok
    assert "cannot reach" in result.message
    assert "security groups" in result.fix


async def test_plain_url_against_a_tls_server_says_rediss(
    settings: Settings, tls_redis: tuple[int, Path]
) -> None:
    port, _ = tls_redis
    result = await redis.check(
        redis_settings(settings, f"redis://mtai:s3cret-pass@127.0.0.1:{port}/0")
    )
    assert not result.ok
    assert result.fix == redis.TLS_FIX
    assert "rediss://" in result.fix
    assert "s3cret" not in result.message + result.fix


async def test_tls_url_against_a_plain_server_says_redis(
    settings: Settings, redis_url: str
) -> None:
    plain = redis_url.replace("redis://", "rediss://", 1)
    result = await redis.check(redis_settings(settings, plain))
    assert not result.ok
    assert result.fix == redis.PLAIN_FIX
    assert "TLS handshake failed" in result.message


async def test_untrusted_certificate_and_wrong_password(
    settings: Settings, tls_redis: tuple[int, Path]
) -> None:
    port, directory = tls_redis
    untrusted = await redis.check(
        redis_settings(settings, f"rediss://mtai:s3cret-pass@127.0.0.1:{port}/0")
    )
    assert not untrusted.ok
    assert "not trusted" in untrusted.message
    assert "MTAI_REDIS_CA_FILE" in untrusted.fix

    ca = str(directory / "ca.crt")
    wrong = await redis.check(
        redis_settings(settings, f"rediss://mtai:nope@127.0.0.1:{port}/0", redis_ca_file=ca)
    )
    assert not wrong.ok
    assert "refused the credentials" in wrong.message
    assert "nope" not in wrong.message + wrong.fix
    right = await redis.check(
        redis_settings(settings, f"rediss://mtai:s3cret-pass@127.0.0.1:{port}/0", redis_ca_file=ca)
    )
    assert right.ok, right


async def test_doctor_command_reports_redis_mismatch(
    settings: Settings, tls_redis: tuple[int, Path]
) -> None:
    port, _ = tls_redis
    result = await asyncio.to_thread(
        doctor, settings, REDIS_URL=f"redis://mtai:s3cret-pass@127.0.0.1:{port}/0"
    )
    assert result.returncode == 1
    assert "[FAIL] redis:" in result.stdout
    assert "rediss://:AUTH_TOKEN@HOST:6379/0" in result.stdout


async def remove(runtime: Runtime, *specs: ModelSpec) -> None:
    """Take a test's models out of the catalog, so later doctor runs do not see them."""
    for spec in specs:
        await runtime.catalog.delete_model(operator(), spec.name)


@pytest.fixture
async def doctor_models(
    runtime: Runtime, fake_upstream: FakeUpstream
) -> AsyncIterator[list[ModelSpec]]:
    """A working OpenAI-compatible model, and an Anthropic-protocol server's model with no key
    (allowed for a self-hosted endpoint), which that server refuses with 401."""
    good = await add_model(runtime, fake_upstream, "openai")
    bad = await add_model(runtime, fake_upstream, "anthropic", api_key=None)
    yield [good, bad]
    await remove(runtime, good, bad)


async def test_providers_credentials_and_a_one_token_call(
    settings: Settings, doctor_models: list[ModelSpec], fake_upstream: FakeUpstream
) -> None:
    good, bad = doctor_models
    listed = await asyncio.to_thread(doctor, settings)
    assert f"] model {good.name}: openai: credentials present" in listed.stdout, listed.stdout
    assert f"] model {bad.name}: anthropic: credentials present" in listed.stdout
    before = len(fake_upstream.requests)
    called = await asyncio.to_thread(doctor, settings, "--call-providers")
    assert f"[ok  ] model {good.name}: openai: a one-token call answered" in called.stdout
    assert f"[FAIL] model {bad.name}: anthropic: upstream answered 401" in called.stdout
    assert called.returncode == 1
    sent = [r for r in fake_upstream.requests[before:] if r.model == good.upstream_model]
    assert sent
    assert sent[0].json["max_tokens"] == 1


async def test_a_model_without_a_key_on_the_official_endpoint_is_named(
    settings: Settings, runtime: Runtime
) -> None:
    spec = await runtime.catalog.put_model(
        None,
        ModelDefinition(
            name=f"nokey-{secrets.token_hex(3)}",
            provider="openai",
            upstream_model="gpt-4o-mini",
            context_window=8192,
            max_output_tokens=512,
            input_price_per_1m=Decimal(0),
            output_price_per_1m=Decimal(0),
        ),
    )
    try:
        result = await asyncio.to_thread(doctor, settings)
    finally:
        await remove(runtime, spec)
    assert result.returncode == 1
    assert f"[FAIL] model {spec.name}: openai: no platform API key" in result.stdout
    assert "fix: give the model an API key" in result.stdout


def local_model(name: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        provider="local",
        upstream_model="gemma",
        base_url=None,
        region=None,
        api_key=None,
        context_window=2048,
        max_output_tokens=256,
        input_price_per_1m=Decimal(0),
        output_price_per_1m=Decimal(0),
        timeout_seconds=60,
        max_retries=0,
        fallbacks=(),
        enabled=True,
    )


def test_memory_counts_workers_and_local_models(settings: Settings, tmp_path: Path) -> None:
    one, how = memory.needed_mb(settings.model_copy(update={"workers": 1}), [])
    four, _ = memory.needed_mb(settings.model_copy(update={"workers": 4}), [])
    assert four == 4 * one
    assert "local embedder" in how
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"\0" * (50 * memory.MB))
    with_llm, how = memory.needed_mb(
        settings.model_copy(update={"workers": 1, "local_model_path": gguf}), [local_model("g")]
    )
    assert with_llm == one + int(50 * memory.LLM_OVERHEAD) + memory.LLM_CONTEXT_MB
    assert "local language model" in how


def test_memory_available_and_a_host_too_small(settings: Settings, tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemAvailable:  204800 kB\n")
    small = memory.available_mb(meminfo)
    assert small is not None
    assert small <= 200  # MemAvailable, or a lower cgroup limit
    have = memory.available_mb()
    assert have is not None
    # More API workers than this machine can hold: the check fails and says what to change.
    workers = have // memory.PROCESS_MB + 1
    crowded = memory.check(settings.model_copy(update={"workers": min(workers, 64)}), [])
    if workers <= 64:
        assert not crowded.ok
        assert "MTAI_WORKERS" in crowded.fix
    fits = memory.check(settings.model_copy(update={"workers": 1}), [])
    assert fits.ok, fits
