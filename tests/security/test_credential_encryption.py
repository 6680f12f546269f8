"""Finding 12 (part): provider keys at rest are bound to their tenant and provider, and the
provider client cache is bounded.

The attack: someone able to write one row (a tenant-scoped SQL injection, a crafted import)
copies another tenant's encrypted provider key into their own row, and the platform decrypts
it and calls the provider with it on their behalf.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import replace

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update

from mtai.db.models import LLMModel, ProviderCredential
from mtai.errors import ConfigurationError
from mtai.runtime import Runtime
from tests.conftest import TenantFixture, add_model
from tests.support.fake_upstreams import FakeUpstream


async def stored(runtime: Runtime, tenant_id: uuid.UUID, provider: str) -> bytes:
    async with runtime.db.platform() as session:
        blob: bytes = (
            await session.execute(
                select(ProviderCredential.api_key_encrypted).where(
                    ProviderCredential.tenant_id == tenant_id,
                    ProviderCredential.provider == provider,
                )
            )
        ).scalar_one()
    return blob


async def overwrite(runtime: Runtime, tenant_id: uuid.UUID, provider: str, blob: bytes) -> None:
    async with runtime.db.platform() as session:
        await session.execute(
            update(ProviderCredential)
            .where(
                ProviderCredential.tenant_id == tenant_id, ProviderCredential.provider == provider
            )
            .values(api_key_encrypted=blob)
        )
    runtime.cache.invalidate(f"creds:{tenant_id}")


async def put(client: httpx.AsyncClient, tenant: TenantFixture, provider: str, key: str) -> None:
    response = await client.put(
        f"/api/v1/provider-credentials/{provider}", json={"api_key": key}, headers=tenant.owner
    )
    assert response.status_code == 200, response.text


def legacy_blob(key_material: str, plaintext: str) -> bytes:
    """A ciphertext as versions before associated data wrote it (version byte 1)."""
    aead = AESGCM(hashlib.sha256(key_material.encode()).digest())
    nonce = os.urandom(12)
    return b"\x01" + nonce + aead.encrypt(nonce, plaintext.encode(), b"\x01")


async def test_a_key_copied_into_another_tenants_row_does_not_decrypt(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
) -> None:
    spec = await add_model(runtime, fake_upstream, "anthropic", max_retries=0)
    await put(client, tenant_a, "anthropic", "sk-ant-victim-a")
    await put(client, tenant_b, "anthropic", "sk-ant-attacker-b")
    await overwrite(
        runtime, tenant_b.id, "anthropic", await stored(runtime, tenant_a.id, "anthropic")
    )
    before = len(fake_upstream.requests)
    response = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_b.owner
    )
    assert response.status_code == 500, response.text
    assert response.json()["code"] == "credential_unusable"
    assert "sk-ant-victim-a" not in response.text
    sent = [r.headers.get("x-api-key") for r in fake_upstream.requests[before:]]
    assert "sk-ant-victim-a" not in sent


async def test_a_key_copied_to_another_provider_does_not_decrypt(
    client: httpx.AsyncClient, runtime: Runtime, tenant_a: TenantFixture
) -> None:
    from mtai.services.crypto import credential_context

    await put(client, tenant_a, "openai", "sk-openai-a")
    blob = await stored(runtime, tenant_a.id, "openai")
    box = runtime.catalog.box
    assert box.decrypt(blob, context=credential_context(tenant_a.id, "openai")) == "sk-openai-a"
    for context in (
        credential_context(tenant_a.id, "anthropic"),
        credential_context(uuid.uuid4(), "openai"),
    ):
        with pytest.raises(ConfigurationError, match="cannot be decrypted"):
            box.decrypt(blob, context=context)


async def test_legacy_ciphertexts_are_reencrypted_at_start_and_then_refused(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    """An upgrade keeps every stored key working (re-encrypted, bound), and afterwards the
    old unbound format is no longer accepted anywhere."""
    from mtai.services.crypto import LegacyCiphertext, credential_context, model_context

    key_material = runtime.settings.encryption_key
    assert key_material is not None
    spec = await add_model(runtime, fake_upstream, "anthropic", max_retries=0)
    await put(client, tenant_a, "anthropic", "placeholder")
    old_credential = legacy_blob(key_material.get_secret_value(), "sk-ant-legacy-a")
    await overwrite(runtime, tenant_a.id, "anthropic", old_credential)
    old_model_key = legacy_blob(key_material.get_secret_value(), "platform-legacy-key")
    async with runtime.db.platform() as session:
        await session.execute(
            update(LLMModel)
            .where(LLMModel.name == spec.name)
            .values(api_key_encrypted=old_model_key)
        )

    assert await runtime.catalog.reencrypt_legacy() >= 2
    assert await runtime.catalog.reencrypt_legacy() == 0  # idempotent: nothing left

    box = runtime.catalog.box
    credential = await stored(runtime, tenant_a.id, "anthropic")
    assert credential.startswith(b"\x02")
    assert (
        box.decrypt(credential, context=credential_context(tenant_a.id, "anthropic"))
        == "sk-ant-legacy-a"
    )
    async with runtime.db.platform() as session:
        model_key = (
            await session.execute(
                select(LLMModel.api_key_encrypted).where(LLMModel.name == spec.name)
            )
        ).scalar_one()
    assert model_key is not None
    assert box.decrypt(model_key, context=model_context(spec.name)) == "platform-legacy-key"

    response = await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
    )
    assert response.status_code == 200, response.text
    assert fake_upstream.requests[-1].headers["x-api-key"] == "sk-ant-legacy-a"

    with pytest.raises(LegacyCiphertext, match="restart"):
        box.decrypt(old_credential, context=credential_context(tenant_a.id, "anthropic"))


async def test_the_provider_client_cache_is_bounded(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    """A tenant rotating its own key on every request leaves at most `provider_cache_size`
    clients behind, and the evicted ones are closed."""
    from mtai.providers.llm.base import CompletionRequest, Message
    from mtai.providers.llm.bedrock import BedrockProvider
    from mtai.providers.llm.registry import Endpoint, ProviderRegistry

    spec = await add_model(runtime, fake_upstream, "openai")
    registry = runtime.registry
    saved = registry.max_providers
    registry.max_providers = 3
    try:
        for i in range(6):
            await put(client, tenant_a, "openai", f"sk-rotated-{i}")
            response = await client.post(
                "/api/v1/chat/", json={"message": "hi", "model": spec.name}, headers=tenant_a.owner
            )
            assert response.status_code == 200, response.text
        assert len(registry) <= 3
    finally:
        registry.max_providers = saved

    small = ProviderRegistry(max_providers=1)
    try:
        endpoint = Endpoint("bedrock", fake_upstream.base_url, "AKID:secret", "us-east-1", 1000, 5)
        first = small.get(endpoint)
        assert isinstance(first, BedrockProvider)
        request = CompletionRequest(spec.upstream_model, [Message("user", "hi")], max_tokens=5)
        await first.complete(request)  # opens its AWS client
        assert first._client is not None
        small.get(replace(endpoint, api_key="AKID2:secret"))  # evicts the first
        assert len(small) == 1
        for _ in range(200):
            if first._client is None:
                break
            await asyncio.sleep(0.01)
        assert first._client is None  # closed on eviction
        await first.complete(request)  # a late caller still gets an answer...
        assert first._client is None  # ...and the client it needed is closed again
    finally:
        await small.aclose()
