"""API key format and hashing: `mtai_<prefix>_<secret>`, stored as HMAC-SHA256(pepper, key).

The prefix is a public lookup handle (unique index); only the hash can confirm the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PATTERN = re.compile(r"^mtai_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{32,64})$")
_ALPHANUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class NewKey:
    plaintext: str
    prefix: str


def generate() -> NewKey:
    prefix = "".join(secrets.choice(_ALPHANUM) for _ in range(12))
    return NewKey(plaintext=f"mtai_{prefix}_{secrets.token_urlsafe(32)}", prefix=prefix)


def prefix_of(candidate: str) -> str | None:
    """The lookup prefix of a well-formed key, or None for anything else."""
    match = KEY_PATTERN.match(candidate)
    return match.group(1) if match else None


def digest(pepper: str, plaintext: str) -> bytes:
    return hmac.new(pepper.encode(), plaintext.encode(), hashlib.sha256).digest()


def matches(pepper: str, plaintext: str, stored: bytes) -> bool:
    return hmac.compare_digest(digest(pepper, plaintext), stored)
