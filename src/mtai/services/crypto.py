"""Encryption at rest for provider credentials: AES-256-GCM under MTAI_ENCRYPTION_KEY."""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mtai.errors import ConfigurationError

_VERSION = b"\x01"


class SecretBox:
    def __init__(self, key_material: str) -> None:
        # Any strong string works as the key: it is stretched to 32 bytes by SHA-256.
        self._aead = AESGCM(hashlib.sha256(key_material.encode()).digest())

    def encrypt(self, plaintext: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext.encode(), _VERSION)

    def decrypt(self, blob: bytes) -> str:
        if not blob.startswith(_VERSION):
            raise ConfigurationError("stored credential has an unknown format")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], _VERSION).decode()
        except InvalidTag as exc:
            raise ConfigurationError(
                "a stored provider credential cannot be decrypted: MTAI_ENCRYPTION_KEY changed. "
                "Restore the old key, or enter the credential again."
            ) from exc
