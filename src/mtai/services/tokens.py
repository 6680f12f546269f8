"""Access tokens (JWT, HS256) for logged-in users."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from mtai.errors import Unauthorized

ISSUER = "mtai"
ALGORITHM = "HS256"
PASSWORD = "password"  # noqa: S105 - a sign-in method, not a secret
SSO = "sso"


@dataclass(frozen=True)
class TokenClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    expires_at: int
    version: int  # the user's token_version when issued; an older one is revoked
    method: str = PASSWORD  # how the person signed in: a tenant enforcing SSO refuses passwords


def issue(
    secret: str,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    ttl_seconds: int,
    version: int,
    method: str = PASSWORD,
) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": str(user_id),
        "tid": str(tenant_id) if tenant_id else None,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "ver": version,
        "mth": method,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode(secret: str, token: str) -> TokenClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "ver"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("Access token expired; log in again.", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("Access token is invalid; log in again.", code="invalid_token") from exc
    try:
        tenant = claims.get("tid")
        return TokenClaims(
            user_id=uuid.UUID(claims["sub"]),
            tenant_id=uuid.UUID(tenant) if tenant else None,
            expires_at=int(claims["exp"]),
            version=int(claims["ver"]),
            method=SSO if claims.get("mth") == SSO else PASSWORD,
        )
    except (ValueError, TypeError) as exc:
        raise Unauthorized("Access token is invalid; log in again.", code="invalid_token") from exc
