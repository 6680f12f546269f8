"""A real OpenID Connect provider on loopback (the `oidc-provider-mock` package), for SSO tests.

It speaks the protocol for real: discovery, an authorization page, the token endpoint with
signed ID tokens, JWKS, userinfo. It accepts any client id (no registration). A person signs
in by submitting their subject on the authorization page; their claims (email, groups, or an
overridden `nonce`) are set with `set_user`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import httpx
import oidc_provider_mock
from authlib.jose import RSAKey
from werkzeug.serving import BaseWSGIServer, make_server


@dataclass
class OidcProvider:
    issuer: str
    app: flask.Flask
    server: BaseWSGIServer

    def set_user(self, sub: str, **claims: Any) -> None:
        response = httpx.put(f"{self.issuer}/users/{sub}", json=claims)
        response.raise_for_status()

    def rotate_keys(self) -> None:
        """The provider replaces its signing key (and publishes only the new one)."""
        with self.app.test_request_context("/"):
            self.app.preprocess_request()
            flask.g.oidc_provider_mock_storage.jwk = RSAKey.generate_key(2048, is_private=True)

    def sign_in(self, authorization_url: str, sub: str) -> str:
        """The person signs in on the provider's page; the redirect back (with code, state)."""
        response = httpx.post(authorization_url, data={"sub": sub}, follow_redirects=False)
        assert response.status_code == 302, response.text[:500]
        return str(response.headers["location"])

    def deny(self, authorization_url: str) -> str:
        response = httpx.post(authorization_url, data={"action": "deny"}, follow_redirects=False)
        assert response.status_code == 302, response.text[:500]
        return str(response.headers["location"])


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@contextmanager
def running_provider(*, token_max_age: timedelta = timedelta(hours=1)) -> Iterator[OidcProvider]:
    app = oidc_provider_mock.app(access_token_max_age=token_max_age)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield OidcProvider(f"http://127.0.0.1:{server.server_port}", app, server)
    finally:
        server.shutdown()
        thread.join(timeout=10)
