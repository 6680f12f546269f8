"""The isolation suite: tenant A, with every credential it has, against tenant B's ids.

Every route that takes an id gets a line in CASES; later features add theirs the same way.
Expected: 404 (B's objects do not exist for A), and B's data unchanged afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from mtai.db.models import (
    ApiKey,
    AuditEvent,
    ChatMessage,
    Collection,
    Conversation,
    Document,
    Invitation,
    Membership,
    ProviderCredential,
    StoredResponse,
    Tenant,
    User,
)
from mtai.runtime import Runtime
from tests.conftest import TenantFixture, invite
from tests.integration.test_rag import wait_done


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # placeholders are filled with the victim's ids (see `victim`)
    body: dict[str, Any] | None = None
    expect: int = 404


CASES = [
    Case("GET", "/api/v1/users/{member_id}"),
    Case("PATCH", "/api/v1/users/{member_id}", {"role": "admin"}),
    Case("DELETE", "/api/v1/users/{member_id}"),
    Case("DELETE", "/api/v1/users/{member_id}?keep_keys=true"),
    Case("POST", "/api/v1/users/{member_id}/sign-out"),
    # Invitations: B's pending invitation cannot be revoked by A's owner or A's admin key.
    Case("DELETE", "/api/v1/invitations/{invitation_id}"),
    Case("GET", "/api/v1/keys/{key_id}"),
    Case("POST", "/api/v1/keys/{key_id}/revoke"),
    Case("DELETE", "/api/v1/keys/{key_id}"),
    Case("POST", "/api/v1/keys/{key_id}/rotate", {}),
    Case("GET", "/api/v1/keys/{key_id}/limits"),
    Case("PUT", "/api/v1/keys/{key_id}/limits", {"rpm": 0}),
    Case("GET", "/api/v1/tenants/{tenant_id}/limits", expect=403),
    Case("PUT", "/api/v1/tenants/{tenant_id}/limits", {"rpm": 0}, expect=403),
    Case("GET", "/api/v1/chat/conversations/{conversation_id}"),
    Case("DELETE", "/api/v1/chat/conversations/{conversation_id}"),
    Case("POST", "/api/v1/chat/", {"message": "hi", "conversation_id": "{conversation_id}"}),
    # Stored responses (OpenAI Responses API): not readable, deletable or continuable.
    Case("GET", "/v1/responses/{response_id}"),
    Case("DELETE", "/v1/responses/{response_id}"),
    Case(
        "POST",
        "/v1/responses",
        {"model": "extractive", "input": "hi", "previous_response_id": "{response_id}"},
    ),
    # Credentials are keyed by provider within the caller's own tenant: B's stay untouched.
    Case("DELETE", "/api/v1/provider-credentials/{provider}"),
    Case(  # a Bedrock key is ACCESS_KEY_ID:SECRET
        "PUT", "/api/v1/provider-credentials/{other_provider}", {"api_key": "a-own:s"}, expect=200
    ),
    # Platform-only routes refuse every tenant credential alike (403 for any id, own included),
    # which reveals nothing about whether the id exists.
    Case("GET", "/api/v1/tenants/{tenant_id}", expect=403),
    Case("PATCH", "/api/v1/tenants/{tenant_id}", {"name": "x"}, expect=403),
    Case("POST", "/api/v1/tenants/{tenant_id}/suspend", expect=403),
    Case("POST", "/api/v1/tenants/{tenant_id}/reactivate", expect=403),
    Case("DELETE", "/api/v1/tenants/{tenant_id}", expect=403),
    Case(
        "PUT",
        "/api/v1/admin/models/{model}",
        {
            "name": "{model}",
            "provider": "extractive",
            "upstream_model": "x",
            "context_window": 1,
            "max_output_tokens": 1,
            "input_price_per_1m": 0,
            "output_price_per_1m": 0,
        },
        expect=403,
    ),
    Case("DELETE", "/api/v1/admin/models/{model}", expect=403),
    # RAG: B's knowledge bases, documents and chunks do not exist for A, whatever the route.
    Case("GET", "/api/v1/rag/documents/{document_id}"),
    Case("DELETE", "/api/v1/rag/documents/{document_id}"),
    Case("GET", "/api/v1/rag/collections/{collection_id}"),
    Case("PATCH", "/api/v1/rag/collections/{collection_id}", {"name": "taken over"}),
    Case("DELETE", "/api/v1/rag/collections/{collection_id}"),
    Case("POST", "/api/v1/rag/documents", {"text": "planted", "collection": "{collection_id}"}),
    Case("POST", "/api/v1/rag/search", {"query": "x", "collection_ids": ["{collection_id}"]}),
    Case(
        "POST",
        "/api/v1/chat/",
        {"message": "x", "use_rag": True, "collection_ids": ["{collection_id}"]},
    ),
    Case("GET", "/api/v1/rag/chunks/{chunk_id}"),
    # Identity: vouching for a tenant's domain is the platform's, whatever the tenant.
    Case("PUT", "/api/v1/sso/domains/{domain}", {"verified": True}, expect=403),
]
# Routes with an id whose isolation is proven elsewhere, and where.
COVERED_ELSEWHERE = {
    # SCIM takes only a tenant's SCIM token, never these credentials: another tenant's token
    # meets every id with 404 in test_scim.py (test_isolation_and_no_identity_or_membership_...).
    **{
        (method, f"/scim/v2/{kind}/{{}}"): "test_scim.py"
        for kind in ("Users", "Groups")
        for method in ("GET", "PUT", "PATCH", "DELETE")
    },
    ("GET", "/scim/v2/ResourceTypes/{}"): "the same for every tenant (RFC 7643 section 6)",
    ("GET", "/scim/v2/Schemas/{}"): "the same for every tenant (RFC 7643 section 7)",
    ("GET", "/ui/{}"): "the web UI's static files",
}

LISTS = [
    "/api/v1/users",
    "/api/v1/invitations",
    "/api/v1/keys",
    "/api/v1/admin/audit",
    "/api/v1/chat/conversations",
    "/api/v1/admin/usage",
    "/api/v1/admin/usage/events",
    "/api/v1/admin/prompt-logs",
    "/api/v1/provider-credentials",
    "/api/v1/limits",
    "/api/v1/chat/models",
    "/v1/models",
    "/api/v1/rag/documents",
    "/api/v1/rag/collections",
    "/api/v1/rag/stats",
]
SECRET = "Quasar-zebra protocol: the vault code is 7741 and only tenant B knows it."


async def snapshot(runtime: Runtime, tenant: TenantFixture) -> dict[str, Any]:
    async with runtime.db.platform() as session:
        t = await session.get(Tenant, tenant.id)
        assert t is not None
        members = (
            await session.execute(
                select(Membership.user_id, Membership.role, User.token_version)
                .join(User, User.id == Membership.user_id)
                .where(Membership.tenant_id == tenant.id)
            )
        ).all()
        invitations = (
            await session.execute(
                select(Invitation.id, Invitation.revoked_at, Invitation.accepted_at).where(
                    Invitation.tenant_id == tenant.id
                )
            )
        ).all()
        keys = (
            await session.execute(
                select(
                    ApiKey.id, ApiKey.name, ApiKey.revoked_at, ApiKey.expires_at, ApiKey.limits
                ).where(ApiKey.tenant_id == tenant.id)
            )
        ).all()
        events = (
            await session.execute(select(AuditEvent.id).where(AuditEvent.tenant_id == tenant.id))
        ).all()
        conversations = (
            await session.execute(
                select(Conversation.id, Conversation.title, Conversation.updated_at).where(
                    Conversation.tenant_id == tenant.id
                )
            )
        ).all()
        messages = (
            await session.execute(select(ChatMessage.id).where(ChatMessage.tenant_id == tenant.id))
        ).all()
        responses = (
            await session.execute(
                select(StoredResponse.id).where(StoredResponse.tenant_id == tenant.id)
            )
        ).all()
        documents = (
            await session.execute(
                select(Document.id, Document.title, Document.status, Document.chunk_count).where(
                    Document.tenant_id == tenant.id
                )
            )
        ).all()
        collections = (
            await session.execute(
                select(Collection.id, Collection.name, Collection.embedding_model).where(
                    Collection.tenant_id == tenant.id
                )
            )
        ).all()
        creds = (
            await session.execute(
                select(ProviderCredential.provider, ProviderCredential.api_key_encrypted).where(
                    ProviderCredential.tenant_id == tenant.id
                )
            )
        ).all()
    return {
        "tenant": (t.name, t.status, t.settings),
        "members": sorted(map(tuple, members)),
        "invitations": sorted(map(tuple, invitations), key=str),
        "keys": sorted(map(tuple, keys)),
        "events": len(events),
        "conversations": sorted(map(tuple, conversations)),
        "messages": len(messages),
        "responses": sorted(map(tuple, responses)),
        "credentials": sorted(map(tuple, creds)),
        "documents": sorted(map(tuple, documents)),
        "collections": sorted(map(tuple, collections)),
    }


@pytest.fixture
async def victim(
    client: httpx.AsyncClient, runtime: Runtime, tenant_b: TenantFixture
) -> dict[str, Any]:
    """Tenant B's ids for every placeholder a case may use."""
    chat = await client.post(
        "/api/v1/chat/",
        json={"message": "B's secret", "model": "extractive"},
        headers=tenant_b.api_key,
    )
    assert chat.status_code == 200
    put = await client.put(
        "/api/v1/provider-credentials/anthropic",
        json={"api_key": "b-secret"},
        headers=tenant_b.owner,
    )
    assert put.status_code == 200
    collection = await client.post(
        "/api/v1/rag/collections", json={"name": "B private"}, headers=tenant_b.owner
    )
    assert collection.status_code == 201, collection.text
    document = await client.post(
        "/api/v1/rag/documents",
        json={"text": SECRET, "title": "B vault", "collection": "B private"},
        headers=tenant_b.owner,
    )
    assert document.status_code == 202, document.text
    ready = await wait_done(client, tenant_b.owner, document.json()["id"])
    assert ready["status"] == "ready", ready
    invitation = await invite(client, tenant_b.api_key, f"pending@{tenant_b.slug}.example")
    stored = await client.post(
        "/v1/responses", json={"model": "extractive", "input": SECRET}, headers=tenant_b.api_key
    )
    assert stored.status_code == 200, stored.text
    return {
        "invitation_id": invitation["id"],
        "tenant_id": tenant_b.id,
        "member_id": tenant_b.member_id,
        "key_id": tenant_b.key_id,
        "conversation_id": chat.json()["conversation_id"],
        "request_id": chat.json()["request_id"],
        "provider": "anthropic",
        "other_provider": "bedrock",
        "model": "extractive",
        "collection_id": collection.json()["id"],
        "document_id": document.json()["id"],
        "response_id": stored.json()["id"],
        "chunk_id": await first_chunk(runtime, document.json()["id"]),
        "domain": f"{tenant_b.slug}.example",
    }


async def first_chunk(runtime: Runtime, document_id: str) -> str:
    async with runtime.db.platform() as session:
        found = await session.execute(
            text("SELECT id FROM rag_chunks WHERE document_id = :d LIMIT 1"), {"d": document_id}
        )
    return str(found.scalar_one())


def fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


def credentials(tenant: TenantFixture) -> dict[str, dict[str, str]]:
    return {"owner token": tenant.owner, "admin API key": tenant.api_key}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
async def test_other_tenants_ids_are_not_found(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    victim: dict[str, Any],
    case: Case,
) -> None:
    before = await snapshot(runtime, tenant_b)
    path = fill(case.path, victim)
    for name, headers in credentials(tenant_a).items():
        response = await client.request(
            case.method, path, json=fill(case.body, victim), headers=headers
        )
        assert response.status_code == case.expect, (name, response.text)
        assert str(tenant_b.id) not in response.text or case.expect == 403
        if case.expect >= 400:
            body = response.json()
            code = body["error"]["code"] if "error" in body else body["code"]  # /v1: OpenAI's
            assert code.endswith(("not_found", "platform_admin_required"))
    assert await snapshot(runtime, tenant_b) == before
    # B still works with its own credentials.
    assert (await client.get("/api/v1/auth/me", headers=tenant_b.api_key)).status_code == 200


@pytest.mark.parametrize("path", LISTS)
async def test_lists_show_only_own_tenant(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    victim: dict[str, Any],
    path: str,
) -> None:
    await runtime.ledger.drain()  # B's usage is in Postgres, where A's lists would find it
    for headers in credentials(tenant_a).values():
        params = (
            {} if path.endswith(("usage", "models", "credentials", "limits")) else {"limit": 200}
        )
        response = await client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        text = response.text
        for foreign in (tenant_b.id, tenant_b.member_id, tenant_b.key_id, *victim.values()):
            if str(foreign) not in ("extractive", "anthropic", "bedrock"):
                assert str(foreign) not in text
        assert tenant_b.owner_email not in text


def every_route(routes: Iterable[Any], prefix: str = "") -> Iterator[Any]:
    """The app's routes, through included routers (FastAPI keeps those as one entry each)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is None:
            yield route if not prefix else _Prefixed(prefix + route.path, route.methods)
            continue
        yield from every_route(inner.routes, prefix + route.include_context.prefix)


@dataclass
class _Prefixed:
    path: str
    methods: set[str]


async def test_suite_covers_every_route_with_an_id(app: Any) -> None:
    """Adding a route that takes an id without an isolation case fails here."""
    covered = {(c.method, re.sub(r"\{[^}]+\}", "{}", c.path)) for c in CASES} | set(
        COVERED_ELSEWHERE
    )
    routes = list(every_route(app.routes))
    assert any("{" in getattr(r, "path", "") for r in routes)  # the walk reaches them
    for route in routes:
        path = getattr(route, "path", "")
        if "{" not in path:
            continue
        for method in getattr(route, "methods", set()) - {"HEAD", "OPTIONS"}:
            template = re.sub(r"\{[^}]+\}", "{}", path)
            assert (method, template) in covered, f"no isolation case for {method} {path}"


async def test_search_and_chat_never_return_another_tenants_passages(
    client: httpx.AsyncClient,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    victim: dict[str, Any],
) -> None:
    own = await client.post(
        "/api/v1/rag/documents",
        json={"text": "The vault of tenant A opens with a brass key.", "title": "A vault"},
        headers=tenant_a.owner,
    )
    assert (await wait_done(client, tenant_a.owner, own.json()["id"]))["status"] == "ready"
    leaks = (victim["document_id"], victim["collection_id"], "Quasar", "7741", "B vault")
    for headers in credentials(tenant_a).values():
        for mode in ("vector", "keyword", "hybrid"):
            found = await client.post(
                "/api/v1/rag/search",
                json={"query": "Quasar-zebra vault code 7741", "mode": mode, "limit": 50},
                headers=headers,
            )
            assert found.status_code == 200, found.text
            assert not any(leak in found.text for leak in leaks), (mode, found.text)
        filtered = await client.post(
            "/api/v1/rag/search",
            json={"query": "vault", "filters": {"document_ids": [victim["document_id"]]}},
            headers=headers,
        )
        assert filtered.json()["results"] == []
        answer = await client.post(
            "/api/v1/chat/",
            json={"message": "What is the Quasar-zebra vault code?", "use_rag": True},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        assert not any(leak in answer.text for leak in leaks), answer.text
        openai = await client.post(
            "/v1/chat/completions",
            json={
                "model": "extractive",
                "messages": [{"role": "user", "content": "Quasar-zebra vault code?"}],
                "use_rag": True,
            },
            headers=headers,
        )
        assert openai.status_code == 200, openai.text
        assert not any(leak in openai.text for leak in leaks), openai.text
    # B itself still finds its passage.
    mine = await client.post(
        "/api/v1/rag/search", json={"query": "Quasar-zebra vault"}, headers=tenant_b.owner
    )
    assert mine.json()["results"][0]["document_id"] == victim["document_id"]
