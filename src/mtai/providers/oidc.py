"""An OpenID Connect relying party: discovery, the authorization code flow with PKCE, and ID
token verification. It knows providers and tokens, nothing of tenants.

The protocol is Authlib's (the authorization request with PKCE, the token request and its
client authentication, the ID token's claims: `iss`, `aud`, `exp`, `iat`, `nonce`) and joserfc's
(the signature, against the provider's JWKS). The HTTP is ours: every call to the provider goes
through the egress guard, since issuers are typed by tenant admins (Authlib's own HTTP clients
would bypass it). Discovery documents and key sets are cached per issuer; a token signed by a
key the cache does not hold (the provider rotated its keys) fetches the key set again, at most
once per `jwks_refresh_seconds`, so forged tokens cannot make us hammer the provider.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError
from joserfc.errors import JoseError as JoseRfcError
from joserfc.jwk import KeySet, KeySetSerialization

from mtai.providers.egress import EgressPolicy, EgressRefused, guarded_client

# ID tokens are signed with asymmetric keys from the JWKS; HS256 (keyed with the client secret)
# is not accepted, so a leaked client secret cannot mint identities.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
MAX_DOCUMENT_BYTES = 512 * 1024


class OidcError(Exception):
    """The provider or its answer cannot be trusted; `code` names what failed."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ClientConfig:
    issuer: str
    client_id: str
    client_secret: str | None
    scopes: tuple[str, ...]
    redirect_uri: str


@dataclass(frozen=True)
class Authorization:
    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class Identity:
    issuer: str
    subject: str
    email: str | None
    email_verified: bool | None
    name: str
    claims: dict[str, Any]


@dataclass
class _Metadata:
    document: dict[str, Any]
    fetched: float


@dataclass
class _Keys:
    keys: KeySet
    fetched: float


class OidcClient:
    def __init__(
        self,
        egress: EgressPolicy,
        *,
        timeout_seconds: float = 10.0,
        metadata_ttl_seconds: float = 3600.0,
        jwks_refresh_seconds: float = 30.0,
        leeway_seconds: int = 60,
    ) -> None:
        self.egress = egress
        self.timeout = httpx.Timeout(timeout_seconds)
        self.deadline = timeout_seconds
        self.metadata_ttl = metadata_ttl_seconds
        self.jwks_refresh = jwks_refresh_seconds
        self.leeway = leeway_seconds
        self._metadata: dict[str, _Metadata] = {}
        self._keys: dict[str, _Keys] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _http(self) -> httpx.AsyncClient:
        return guarded_client(
            self.egress, timeout=self.timeout, limits=httpx.Limits(max_connections=4)
        )

    def vet_issuer(self, issuer: str) -> str:
        """The issuer as stored: https (or allow-listed), no credentials, no query."""
        issuer = issuer.strip()
        try:
            self.egress.check_url(_discovery_url(issuer))
        except EgressRefused as exc:
            raise OidcError(str(exc), "issuer_refused") from exc
        if "?" in issuer or "#" in issuer:
            raise OidcError("An issuer URL has no query or fragment.", "issuer_refused")
        return issuer

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            self.egress.check_url(url)
            async with self._http() as http:
                status, content = await _bounded(
                    http.stream("GET", url, headers=_JSON), self.deadline
                )
        except EgressRefused as exc:
            raise OidcError(
                f"The provider's {what} URL is refused: {exc}", "issuer_refused"
            ) from exc
        except httpx.HTTPError as exc:
            raise OidcError(
                f"The identity provider's {what} could not be fetched ({type(exc).__name__}); "
                "check the issuer URL and that mtai can reach it.",
                "provider_unreachable",
            ) from exc
        if status != 200 or content is None:
            raise OidcError(
                f"The identity provider's {what} answered HTTP {status} (or more than "
                f"{MAX_DOCUMENT_BYTES // 1024} KiB); check the issuer URL.",
                "provider_unreachable",
            )
        try:
            body = json.loads(content)
        except ValueError as exc:
            raise OidcError(f"The provider's {what} is not JSON.", "provider_invalid") from exc
        if not isinstance(body, dict):
            raise OidcError(f"The provider's {what} is not a JSON object.", "provider_invalid")
        return body

    async def metadata(self, issuer: str) -> dict[str, Any]:
        cached = self._metadata.get(issuer)
        if cached is not None and time.monotonic() - cached.fetched < self.metadata_ttl:
            return cached.document
        document = await self._get_json(_discovery_url(issuer), "discovery document")
        # OIDC Discovery 4.3: the document's issuer must be the one it was fetched for (ID
        # tokens are then checked against the document's exact string, trailing slash and all).
        if str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
            raise OidcError(
                f"The discovery document names issuer {document.get('issuer')!r}, not {issuer!r}; "
                "enter the issuer exactly as the provider states it.",
                "issuer_mismatch",
            )
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(field), str):
                raise OidcError(f"The discovery document lacks {field}.", "provider_invalid")
        # Browsers are sent there: a web address of the issuer's own kind, nothing else.
        if urlsplit(document["authorization_endpoint"]).scheme != urlsplit(issuer).scheme:
            raise OidcError(
                "The discovery document's authorization_endpoint is not an address of the "
                "issuer's scheme.",
                "provider_invalid",
            )
        self._metadata[issuer] = _Metadata(document, time.monotonic())
        return document

    async def _key_set(self, issuer: str, jwks_uri: str, *, refresh: bool) -> KeySet | None:
        """The cached key set; with `refresh`, fetched again unless that happened just now
        (None: no newer keys may be fetched yet)."""
        lock = self._locks.setdefault(issuer, asyncio.Lock())
        async with lock:
            cached = self._keys.get(issuer)
            if cached is not None and not refresh:
                return cached.keys
            if cached is not None and time.monotonic() - cached.fetched < self.jwks_refresh:
                return None
            document = await self._get_json(jwks_uri, "key set (JWKS)")
            try:
                # Checked by the import itself: a malformed set raises below.
                keys = KeySet.import_key_set(cast(KeySetSerialization, document))
            except (JoseRfcError, ValueError, TypeError, KeyError) as exc:
                raise OidcError("The provider's key set is not valid.", "provider_invalid") from exc
            self._keys[issuer] = _Keys(keys, time.monotonic())
            return keys

    async def authorization(self, config: ClientConfig) -> Authorization:
        metadata = await self.metadata(config.issuer)
        state, nonce, verifier = _random(), _random(), _random(48)
        url = prepare_grant_uri(
            metadata["authorization_endpoint"],
            config.client_id,
            "code",
            redirect_uri=config.redirect_uri,
            scope=list(config.scopes),
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return Authorization(url, state, nonce, verifier)

    async def complete(self, config: ClientConfig, code: str, flow: Authorization) -> Identity:
        """Exchange the code and verify the ID token; the identity it vouches for."""
        metadata = await self.metadata(config.issuer)
        token = await self._token(config, metadata, code, flow.code_verifier)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError(
                "The provider returned no ID token; add the openid scope.", "no_id_token"
            )
        claims = await self._verify(config, metadata, id_token, flow.nonce)
        userinfo_endpoint = metadata.get("userinfo_endpoint")
        if "email" not in claims and isinstance(userinfo_endpoint, str):
            claims = {**await self._userinfo(userinfo_endpoint, token, claims["sub"]), **claims}
        email = claims.get("email")
        verified = claims.get("email_verified")
        if not isinstance(email, str) or len(email) > 320 or not email.isprintable():
            email = None
        name = "".join(c for c in str(claims.get("name") or "") if c.isprintable())
        return Identity(
            issuer=config.issuer,
            subject=str(claims["sub"]),
            email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
            email_verified=verified if isinstance(verified, bool) else None,
            name=name[:200],
            claims=claims,
        )

    async def _token(
        self, config: ClientConfig, metadata: dict[str, Any], code: str, verifier: str
    ) -> dict[str, Any]:
        endpoint = str(metadata["token_endpoint"])
        supported = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        method = (
            "none"
            if not config.client_secret
            else "client_secret_basic"
            if "client_secret_basic" in supported
            else "client_secret_post"
        )
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=config.redirect_uri,
            code_verifier=verifier,
        )
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        uri, headers, body = ClientAuth(config.client_id, config.client_secret, method).prepare(
            "POST", endpoint, headers, body
        )
        try:
            self.egress.check_url(uri)
            async with self._http() as http:
                status, content = await _bounded(
                    http.stream("POST", uri, content=body, headers=headers), self.deadline
                )
        except EgressRefused as exc:
            raise OidcError(f"The token endpoint is refused: {exc}", "issuer_refused") from exc
        except httpx.HTTPError as exc:
            raise OidcError(
                f"The identity provider's token endpoint could not be reached "
                f"({type(exc).__name__}).",
                "provider_unreachable",
            ) from exc
        try:
            token = json.loads(content) if content is not None else None
        except ValueError:
            token = None
        if status != 200 or not isinstance(token, dict):
            # The provider's own words stay out of the answer (they may echo secrets).
            raise OidcError(
                "The identity provider refused the sign-in code (expired, used twice, or the "
                "client id and secret are wrong); sign in again.",
                "code_exchange_failed",
            )
        return token

    async def _verify(
        self, config: ClientConfig, metadata: dict[str, Any], id_token: str, nonce: str
    ) -> dict[str, Any]:
        jwks_uri = str(metadata["jwks_uri"])
        keys = await self._key_set(config.issuer, jwks_uri, refresh=False)
        decoded = None
        for attempt in range(2):
            assert keys is not None
            try:
                decoded = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
                break
            except (BadSignatureError, InvalidKeyIdError) as exc:
                # Perhaps a key the provider rotated in since we fetched its set.
                keys = (
                    await self._key_set(config.issuer, jwks_uri, refresh=True)
                    if attempt == 0
                    else None
                )
                if keys is None:
                    raise OidcError(
                        "The ID token's signature does not verify with the provider's keys.",
                        "invalid_signature",
                    ) from exc
            except (JoseRfcError, ValueError) as exc:
                raise OidcError("The ID token is malformed.", "invalid_id_token") from exc
        assert decoded is not None
        subject = decoded.claims.get("sub")
        # OIDC Core 2: at most 255 ASCII characters.
        if (
            not isinstance(subject, str)
            or not 0 < len(subject) <= 255
            or not (subject.isascii() and subject.isprintable())
        ):
            raise OidcError("The ID token's subject is not valid.", "invalid_id_token")
        claims = CodeIDToken(
            dict(decoded.claims),
            dict(decoded.header),
            {
                "iss": {"essential": True, "value": config.issuer},
                "aud": {"essential": True, "value": config.client_id},
                "sub": {"essential": True},
                "nonce": {"essential": True},
            },
            {"nonce": nonce, "client_id": config.client_id},
        )
        try:
            claims.validate(leeway=self.leeway)
        except JoseRfcError as exc:
            code = exc.error
            raise OidcError(
                f"The ID token is not valid for this sign-in ({exc.description or code}); sign in "
                "again.",
                "expired_id_token" if code == "expired_token" else "invalid_id_token",
            ) from exc
        return dict(claims)

    async def _userinfo(self, url: str, token: dict[str, Any], subject: str) -> dict[str, Any]:
        try:
            self.egress.check_url(url)
            bearer = {"Authorization": f"Bearer {token.get('access_token', '')}", **_JSON}
            async with self._http() as http:
                status, content = await _bounded(
                    http.stream("GET", url, headers=bearer), self.deadline
                )
            body = json.loads(content) if status == 200 and content is not None else {}
        except (EgressRefused, httpx.HTTPError, ValueError):
            return {}
        # OIDC Core 5.3.2: userinfo about another subject must not be used.
        if not isinstance(body, dict) or body.get("sub") != subject:
            return {}
        return body

    def forget(self, issuer: str) -> None:
        """Drop what is cached about an issuer (its configuration changed)."""
        self._metadata.pop(issuer, None)
        self._keys.pop(issuer, None)


_JSON = {"Accept": "application/json"}


def _discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


async def _bounded(
    stream: AbstractAsyncContextManager[httpx.Response], deadline: float
) -> tuple[int, bytes | None]:
    """(status, body), the body None when larger than MAX_DOCUMENT_BYTES: read no further.
    The whole exchange ends by `deadline` seconds (httpx's timeouts bound each read only, and
    a provider sending a byte at a time would hold the request for days)."""
    try:
        async with asyncio.timeout(deadline), stream as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    return response.status_code, None
            return response.status_code, bytes(body)
    except TimeoutError as exc:
        raise httpx.ReadTimeout(f"no complete answer within {deadline:g} s") from exc


def _random(size: int = 32) -> str:
    return secrets.token_urlsafe(size)
