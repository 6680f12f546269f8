"""Finding 6: SSRF through tenant provider credentials.

A tenant admin chooses a provider's base URL. The attacks: point it at the platform's own
network (loopback, the cloud metadata address, private ranges, a name that resolves there now
or only later), follow a redirect inward, read internal answers back through error messages,
map ports by telling "refused" from "timed out", and make the platform sign Bedrock calls to
the tenant's endpoint with its own AWS identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.dialects.postgresql import insert

from mtai.app import create_app
from mtai.config import Settings
from mtai.db.models import ProviderCredential
from mtai.runtime import Runtime
from tests.conftest import TenantFixture, add_model
from tests.support.fake_upstreams import Behaviour, FakeUpstream

SECRET_BODY = "ami-id: i-0123456789 internal-token=s3cr3t-metadata"


# ------------------------------------------------------------------------ helpers


@contextlib.asynccontextmanager
async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A loopback TCP server in this event loop; yields its port."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def answering(status: str, body: str, headers: str = "") -> Callable[..., Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            payload = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n{headers}"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        writer.close()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts the connection and never answers: an open port that times out."""
    with contextlib.suppress(ConnectionError):
        await reader.read()
    writer.close()


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def put_credential(
    client: httpx.AsyncClient, tenant: TenantFixture, provider: str, **body: Any
) -> httpx.Response:
    return await client.put(
        f"/api/v1/provider-credentials/{provider}", json=body, headers=tenant.owner
    )


async def store_credential_directly(
    runtime: Runtime, tenant: TenantFixture, provider: str, api_key: str, base_url: str | None
) -> None:
    """A row as an older version saved it, without today's checks (an upgrade keeps those)."""
    from mtai.services.crypto import credential_context

    blob = runtime.catalog.box.encrypt(api_key, context=credential_context(tenant.id, provider))
    async with runtime.db.tenant(tenant.id) as session:
        statement = insert(ProviderCredential).values(
            tenant_id=tenant.id, provider=provider, api_key_encrypted=blob, base_url=base_url
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[ProviderCredential.tenant_id, ProviderCredential.provider],
                set_={"api_key_encrypted": blob, "base_url": base_url},
            )
        )
    runtime.cache.invalidate(f"creds:{tenant.id}")


async def chat(client: httpx.AsyncClient, tenant: TenantFixture, model: str) -> httpx.Response:
    return await client.post(
        "/api/v1/chat/", json={"message": "hi", "model": model}, headers=tenant.owner
    )


@pytest.fixture(scope="module")
async def private(settings: Settings) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """An operator's private deployment: loopback allow-listed for tenant-chosen URLs."""
    app: FastAPI = create_app(settings.model_copy(update={"egress_allow_hosts": "127.0.0.1"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://private") as c:
            yield app.state.runtime, c


# ------------------------------------------------------------------------ over HTTP


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/v1",  # the platform's own loopback services
        "https://localhost/v1",  # a name that resolves to loopback
        "https://169.254.169.254/latest/meta-data",  # the cloud metadata service
        "https://10.0.0.5/v1",
        "https://100.64.0.1/v1",  # carrier-grade NAT, often the provider's internal range
        "https://[::1]/v1",
        "https://[::ffff:127.0.0.1]/v1",  # IPv4-mapped IPv6 loopback
        "https://[fd00::1]/v1",
        "https://0.0.0.0/v1",
        "https://api.example.com:6379/v1",  # a port that is not https (Redis here)
        "https://user:pw@api.example.com/v1",  # credentials smuggled in the URL
    ],
)
async def test_a_tenant_cannot_save_an_internal_base_url(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream, tenant_b: TenantFixture, url: str
) -> None:
    port = fake_upstream.base_url.rsplit(":", 1)[1]
    response = await put_credential(
        client, tenant_b, "openai", api_key="sk-attacker", base_url=url.format(port=port)
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "base_url_refused"
    listed = await client.get("/api/v1/provider-credentials", headers=tenant_b.owner)
    assert listed.json() == []


@pytest.mark.parametrize(
    "url",
    [
        "https://" + "\u00fc" * 70 + ".example/v1",  # an IDNA label over 63 characters
        "https://\u2488.example/v1",  # a code point IDNA refuses
    ],
)
async def test_a_host_name_that_cannot_be_encoded_is_a_422_not_a_500(
    client: httpx.AsyncClient, tenant_b: TenantFixture, url: str
) -> None:
    response = await put_credential(client, tenant_b, "openai", api_key="sk-x", base_url=url)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "base_url_refused"


async def test_an_internal_url_saved_before_the_upgrade_is_refused_at_connect_time(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_b: TenantFixture,
) -> None:
    """The check runs on every connection, not only when the URL is saved."""
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    for url in (f"{fake_upstream.base_url}/v1", "https://localhost/v1"):
        await store_credential_directly(runtime, tenant_b, "openai", "sk-attacker", url)
        before = len(fake_upstream.requests)
        response = await chat(client, tenant_b, spec.name)
        assert response.status_code == 502, response.text
        assert "base URL" in response.json()["detail"]
        assert "Errno" not in response.text
        assert len(fake_upstream.requests) == before  # nothing reached the internal server


async def test_upstream_error_bodies_are_not_returned(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
) -> None:
    """Even the operator's own upstream: its words go to the logs, the tenant gets the status."""
    spec = await add_model(runtime, fake_upstream, "openai", api_key=None, max_retries=0)
    response = await chat(client, tenant_a, spec.name)
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert "401" in detail
    assert "API key" not in detail  # the fake's 401 body: "You didn't provide an API key..."
    assert response.json()["request_id"]


async def test_a_tenant_url_cannot_read_internal_answers_back(
    private: tuple[Runtime, httpx.AsyncClient],
    fake_upstream: FakeUpstream,
    tenant_b: TenantFixture,
) -> None:
    runtime, client = private
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    async with raw_server(answering("404 Not Found", SECRET_BODY)) as port:
        put = await put_credential(
            client, tenant_b, "openai", api_key="sk-b", base_url=f"http://127.0.0.1:{port}/v1"
        )
        assert put.status_code == 200, put.text  # allow-listed by the operator
        response = await chat(client, tenant_b, spec.name)
    assert response.status_code == 502
    assert "404" in response.json()["detail"]
    assert "s3cr3t" not in response.text
    assert "ami-id" not in response.text


async def test_an_upstream_verdict_on_the_request_is_a_400_without_its_body(
    private: tuple[Runtime, httpx.AsyncClient],
    fake_upstream: FakeUpstream,
    tenant_b: TenantFixture,
) -> None:
    """A 400 judges the request (the client's to fix, not retried by SDKs); its body may still
    carry what the upstream's network knows, so it stays in the operator's logs."""
    runtime, client = private
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    async with raw_server(answering("400 Bad Request", SECRET_BODY)) as port:
        await put_credential(
            client, tenant_b, "openai", api_key="sk-b", base_url=f"http://127.0.0.1:{port}/v1"
        )
        response = await chat(client, tenant_b, spec.name)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "upstream_rejected_request"
    assert "s3cr3t" not in response.text
    assert "ami-id" not in response.text


async def test_redirects_are_not_followed(
    private: tuple[Runtime, httpx.AsyncClient],
    fake_upstream: FakeUpstream,
    tenant_b: TenantFixture,
) -> None:
    runtime, client = private
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    inward = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    async with raw_server(answering("307 Temporary Redirect", "", f"Location: {inward}\r\n")) as p:
        await put_credential(
            client, tenant_b, "openai", api_key="sk-b", base_url=f"http://127.0.0.1:{p}/v1"
        )
        response = await chat(client, tenant_b, spec.name)
    assert response.status_code == 502
    assert "307" in response.json()["detail"]
    assert "169.254" not in response.text


async def test_an_upstream_answer_that_cannot_be_decoded_is_a_502_not_a_500(
    private: tuple[Runtime, httpx.AsyncClient],
    fake_upstream: FakeUpstream,
    tenant_b: TenantFixture,
) -> None:
    """The tenant's own upstream claims a gzip body and sends something else."""
    runtime, client = private
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0)
    lying = answering("200 OK", "not gzip at all", "Content-Encoding: gzip\r\n")
    async with raw_server(lying) as port:
        await put_credential(
            client, tenant_b, "openai", api_key="sk-b", base_url=f"http://127.0.0.1:{port}/v1"
        )
        response = await chat(client, tenant_b, spec.name)
    assert response.status_code == 502, response.text
    assert response.json()["code"] == "upstream_error"


async def test_refused_and_timed_out_look_the_same(
    private: tuple[Runtime, httpx.AsyncClient],
    fake_upstream: FakeUpstream,
    tenant_b: TenantFixture,
) -> None:
    runtime, client = private
    spec = await add_model(runtime, fake_upstream, "openai", max_retries=0, timeout_seconds=1.0)
    details = []
    async with raw_server(silent) as open_port:
        for port in (closed_port(), open_port):
            put = await put_credential(
                client, tenant_b, "openai", api_key="sk-b", base_url=f"http://127.0.0.1:{port}/v1"
            )
            assert put.status_code == 200
            response = await chat(client, tenant_b, spec.name)
            assert response.status_code == 502, response.text
            details.append((response.json()["code"], response.json()["detail"]))
    assert details[0] == details[1]


async def test_a_bedrock_key_without_a_secret_is_refused(
    client: httpx.AsyncClient, tenant_b: TenantFixture
) -> None:
    for key in ("AKIDONLY", "AKIDONLY:", ":secret-only"):
        response = await put_credential(client, tenant_b, "bedrock", api_key=key)
        assert response.status_code == 422, response.text
        assert "SECRET" in response.json()["detail"]


async def test_a_tenant_bedrock_credential_never_borrows_the_platform_identity(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_b: TenantFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key id without a secret (saved before the check existed) must not fall back to the
    platform's AWS credentials while calling the tenant's endpoint."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPLATFORMIDENTITY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "platform-secret")
    spec = await add_model(runtime, fake_upstream, "bedrock", api_key=None, max_retries=0)
    await store_credential_directly(runtime, tenant_b, "bedrock", "AKIDTENANTONLY", None)
    before = len(fake_upstream.requests)
    response = await chat(client, tenant_b, spec.name)
    assert response.status_code == 502, response.text
    assert "ACCESS_KEY_ID:SECRET_ACCESS_KEY" in response.json()["detail"]
    signed = [r.headers.get("authorization", "") for r in fake_upstream.requests[before:]]
    assert not any("AKIAPLATFORMIDENTITY" in header for header in signed)


async def test_an_allow_listed_private_upstream_works(
    private: tuple[Runtime, httpx.AsyncClient],
    fake_upstream: FakeUpstream,
    tenant_b: TenantFixture,
) -> None:
    """What a private deployment does on purpose keeps working: the allow-list."""
    runtime, client = private
    spec = await add_model(runtime, fake_upstream, "openai")
    fake_upstream.script(spec.upstream_model, Behaviour(text="from the private vLLM"))
    put = await put_credential(
        client, tenant_b, "openai", api_key="sk-own", base_url=f"{fake_upstream.base_url}/v1"
    )
    assert put.status_code == 200, put.text
    response = await chat(client, tenant_b, spec.name)
    assert response.status_code == 200, response.text
    assert response.json()["response"] == "from the private vLLM"
    assert fake_upstream.requests[-1].headers["authorization"] == "Bearer sk-own"


# ------------------------------------------------------------------------ the guard itself


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        (str(ipaddress.IPv4Address(0)), False),  # unspecified
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("198.18.0.1", False),
        ("::1", False),
        ("::", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    from mtai.providers.egress import is_public

    assert is_public(ipaddress.ip_address(address)) is public


async def test_dns_rebinding_is_caught_at_connect_time(fake_upstream: FakeUpstream) -> None:
    """A name that was public when the URL was saved and points inward when it is used."""
    from mtai.providers.egress import EgressPolicy, EgressRefused, guarded_client

    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    policy = EgressPolicy()
    await policy.vet_url("https://rebind.example/v1", rebinding)  # saved: public
    client = guarded_client(
        policy, timeout=httpx.Timeout(5.0), limits=httpx.Limits(), resolve=rebinding
    )
    async with client:
        with pytest.raises(EgressRefused, match="public address"):
            await client.get("https://rebind.example/v1/models")


async def test_the_connection_goes_to_the_vetted_address(fake_upstream: FakeUpstream) -> None:
    """The guard connects to the address it checked (no second lookup) and keeps the name
    for the Host header; an allow-listed name may be private."""
    from mtai.providers.egress import EgressPolicy, guarded_client

    port = int(fake_upstream.base_url.rsplit(":", 1)[1])
    lookups: list[str] = []

    async def resolve(host: str, p: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    policy = EgressPolicy.build(["upstream.internal"], [443])
    async with guarded_client(
        policy, timeout=httpx.Timeout(5.0), limits=httpx.Limits(), resolve=resolve
    ) as client:
        response = await client.get(
            f"http://upstream.internal:{port}/v1/models",
            headers={"Authorization": "Bearer x"},
        )
    assert response.status_code == 200
    assert lookups == ["upstream.internal"]
    assert fake_upstream.requests[-1].headers["host"] == f"upstream.internal:{port}"


async def test_the_aiohttp_resolver_refuses_internal_addresses() -> None:
    """Bedrock (aiobotocore, on aiohttp) goes through the same guard."""
    from mtai.providers.egress import EgressPolicy, EgressRefused, GuardedResolver

    async def metadata(host: str, port: int) -> list[str]:
        return ["169.254.169.254"]

    resolver = GuardedResolver(EgressPolicy(), resolve=metadata)
    with pytest.raises(EgressRefused):
        await resolver.resolve("bedrock.attacker.example", 443)

    async def public(host: str, port: int) -> list[str]:
        return ["52.94.0.1"]

    (result,) = await GuardedResolver(EgressPolicy(), resolve=public).resolve("x.example", 443)
    assert (result["host"], result["hostname"], result["port"]) == ("52.94.0.1", "x.example", 443)


def test_the_allow_list_is_validated() -> None:
    from mtai.errors import ConfigurationError
    from mtai.providers.egress import EgressPolicy

    policy = EgressPolicy.build(["vllm.internal", "*.corp.example", "10.0.0.0/8", "::1"], [443])
    assert policy.host_allowed("vllm.internal")
    assert policy.host_allowed("a.corp.example")
    assert not policy.host_allowed("corp.example.evil.com")
    assert policy.host_allowed("10.2.3.4")
    assert not policy.host_allowed("11.0.0.1")
    with pytest.raises(ConfigurationError, match="MTAI_EGRESS_ALLOW_HOSTS"):
        EgressPolicy.from_settings(Settings(_env_file=None, egress_allow_hosts="http://bad/url"))
