"""The egress guard: every outbound call to a URL a tenant chose goes through here.

A tenant-chosen URL must be https, name no credentials, use an allowed port (443 unless the
operator allows more), and its host must resolve to public addresses only. The address check
happens when the connection is made, on every connection, and the connection goes to the
address that was checked, so a name that answers differently the second time (DNS rebinding)
gains nothing. Redirects are not followed and proxy variables are ignored (a proxy would hide
the destination from the guard).

Operators of private deployments allow-list destinations (`MTAI_EGRESS_ALLOW_HOSTS`: names,
`*.suffix` wildcards, addresses or CIDR networks): an allow-listed destination may be private,
plain http and on any port. The operator's own catalog models are trusted and do not come
through here; only URLs a tenant typed do.

`GuardedTransport` is the httpx side (give it to any httpx/OpenAI/Anthropic client with
`transport=` / `http_client=`), `GuardedResolver` the aiohttp side (aiobotocore's
`connector_args={"resolver": ...}`); `EgressPolicy.vet_url` validates a URL when it is saved.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from mtai.config import Settings
from mtai.errors import ConfigurationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Resolves (host, port) to the addresses a connection may use; swapped in tests.
Resolve = Callable[[str, int], Awaitable[list[str]]]

# Ranges `ipaddress` counts as global (or does not flag) that must not be reached either.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/10",  # carrier-grade NAT, often the cloud's own internal range
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "64:ff9b::/96",  # NAT64: embeds an IPv4 address that could be anything
        "64:ff9b:1::/48",  # local-use NAT64
        "2002::/16",  # 6to4: embeds an IPv4 address
        "2001::/32",  # Teredo
    )
)


class EgressRefused(Exception):
    """A tenant-chosen destination the guard refuses; the message says what to change."""


def is_public(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses: not private, loopback, link-local
    (169.254.169.254, the cloud metadata service, included), multicast, reserved,
    unspecified, shared (100.64/10), or an IPv6 form embedding an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return False
    return (
        address.is_global
        and not address.is_private
        and not address.is_loopback
        and not address.is_link_local
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and not (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
        and not any(address in network for network in _NOT_PUBLIC)
    )


async def system_resolve(host: str, port: int) -> list[str]:
    """The host's addresses, resolved without blocking the event loop."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    allow_names: frozenset[str] = frozenset()
    allow_suffixes: tuple[str, ...] = ()
    allow_networks: tuple[IPNetwork, ...] = ()
    allowed_ports: frozenset[int] = frozenset({443})

    @classmethod
    def build(cls, allow_hosts: Iterable[str], allowed_ports: Iterable[int]) -> EgressPolicy:
        """From the settings' lists; raises ValueError naming an entry that is not usable."""
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in allow_hosts:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            if entry.startswith("*."):
                suffixes.append(entry[1:])  # "*.corp.example" matches "x.corp.example"
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or " " in entry:
                raise ValueError(
                    f"egress allow-list entry {raw!r} is neither a host name, an address nor a "
                    "CIDR network"
                )
            names.add(entry)
        return cls(frozenset(names), tuple(suffixes), tuple(networks), frozenset(allowed_ports))

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        try:
            return cls.build(settings.egress_allow_list, settings.egress_port_list)
        except ValueError as exc:
            raise ConfigurationError(
                f"MTAI_EGRESS_ALLOW_HOSTS is not usable: {exc}. List host names, *.suffix "
                "wildcards, addresses or CIDR networks, separated by commas."
            ) from exc

    # -- the rules ---------------------------------------------------------------------------

    def host_allowed(self, host: str) -> bool:
        """Whether the operator allow-listed this host (by name, or as an address)."""
        name = host.lower().rstrip(".")
        if name in self.allow_names or any(name.endswith(s) for s in self.allow_suffixes):
            return True
        address = _parse_address(name)
        return address is not None and self._network_allowed(address)

    def _network_allowed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allow_networks)

    def address_allowed(self, address: IPAddress) -> bool:
        return is_public(address) or self._network_allowed(address)

    def check_url(self, url: str) -> None:
        """Scheme, credentials, port and a literal address: what can be known without DNS."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EgressRefused(f"The base URL is not a valid URL ({exc}).") from exc
        host = parts.hostname or ""
        if not host:
            raise EgressRefused("The base URL has no host; write it as https://host/path.")
        if parts.username is not None or parts.password is not None:
            raise EgressRefused(
                "The base URL must not contain a user name or password; put the key in api_key."
            )
        if parts.query or parts.fragment:
            raise EgressRefused("The base URL must not have a query string or fragment.")
        allowed = self.host_allowed(host)
        if parts.scheme != "https" and not (parts.scheme == "http" and allowed):
            raise EgressRefused(
                "The base URL must use https; plain http is only for hosts the operator "
                "allow-lists (MTAI_EGRESS_ALLOW_HOSTS)."
            )
        effective = port if port is not None else (443 if parts.scheme == "https" else 80)
        if not allowed and effective not in self.allowed_ports:
            ports = ", ".join(str(p) for p in sorted(self.allowed_ports)) or "none"
            raise EgressRefused(
                f"Port {effective} is not allowed for a base URL (allowed: {ports}); use "
                "the provider's https port or ask the operator."
            )
        address = _parse_address(host)
        if address is not None and not allowed and not self.address_allowed(address):
            raise EgressRefused(_not_public(host))

    async def vet(self, host: str, port: int, resolve: Resolve = system_resolve) -> list[str]:
        """The addresses a connection to host:port may use; refuses the host if any address
        it resolves to is not public (and the host is not allow-listed)."""
        allowed = self.host_allowed(host)
        if not allowed and port not in self.allowed_ports:
            raise EgressRefused(f"Port {port} is not allowed for a tenant-chosen base URL.")
        try:
            addresses = await resolve(host, port)
        except (OSError, ValueError) as exc:  # ValueError: a name IDNA cannot encode
            raise EgressRefused(_not_public(host)) from exc
        if not addresses:
            raise EgressRefused(_not_public(host))
        if not allowed:
            for text in addresses:
                address = _parse_address(text)
                if address is None or not self.address_allowed(address):
                    raise EgressRefused(_not_public(host))
        return addresses

    async def vet_url(self, url: str, resolve: Resolve = system_resolve) -> None:
        """Everything `check_url` checks, and the host's addresses as DNS answers now (they
        are checked again on every connection)."""
        self.check_url(url)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        await self.vet(parts.hostname or "", port, resolve)


def _not_public(host: str) -> str:
    # Unresolvable and private look alike: the answer must not map the operator's network.
    return (
        f"The base URL's host {host} does not resolve to a public address; tenant-chosen "
        "provider URLs may only reach the internet (an operator can allow-list a private "
        "host with MTAI_EGRESS_ALLOW_HOSTS)."
    )


# -- httpx / httpcore --------------------------------------------------------------------------


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address check in front of every connect."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolve: Resolve = system_resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self._resolve = resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface, passed through
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.policy.vet(host, port, self._resolve)
        options = list(socket_options or [])
        failure: Exception | None = None
        for address in addresses:  # the vetted address; TLS still verifies the name
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # vet() never returns an empty list
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("A tenant-chosen URL cannot reach a Unix socket.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that checks every request's URL and every connection's address."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        limits: httpx.Limits,
        resolve: Resolve = system_resolve,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self._inner = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
        # httpx takes no network backend; its pool is rebuilt with the same settings and ours.
        self._inner._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy, resolve=resolve),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.policy.check_url(str(request.url))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(
    policy: EgressPolicy,
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits,
    resolve: Resolve = system_resolve,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """An httpx client for tenant-chosen URLs: guarded, no redirects, no proxy variables."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy, limits=limits, resolve=resolve, ssl_context=ssl_context),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


# -- aiohttp (aiobotocore) ---------------------------------------------------------------------


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with the address check: aiohttp connects to exactly the addresses
    returned here, and verifies TLS against the host name."""

    def __init__(self, policy: EgressPolicy, *, resolve: Resolve = system_resolve) -> None:
        self.policy = policy
        self._resolve = resolve

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self.policy.vet(host, port, self._resolve)
        results: list[ResolveResult] = []
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            results.append(
                {
                    "hostname": host,
                    "host": str(address),
                    "port": port,
                    "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        return results

    async def close(self) -> None:
        """Nothing to release: resolution is one getaddrinfo call per connection."""


def connector_args(policy: EgressPolicy, resolve: Resolve = system_resolve) -> dict[str, Any]:
    """aiobotocore `AioConfig(connector_args=...)` that routes every connection through the
    guard (DNS caching off, so every connection is checked)."""
    return {"resolver": GuardedResolver(policy, resolve=resolve), "use_dns_cache": False}
