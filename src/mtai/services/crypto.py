"""Encryption at rest for provider credentials: AES-256-GCM under MTAI_ENCRYPTION_KEY.

Every ciphertext is bound to where it belongs by GCM's associated data: a tenant's credential
to `tenant id|provider`, a catalog model's key to the model's name. A ciphertext copied into
another tenant's row, another provider or another model does not decrypt.

Format: one version byte, a 12-byte nonce, the sealed text. Version 2 is bound as above.
Version 1 (written before associated data was used) is bound to nothing: `upgrade` turns one
into version 2 (the server does so for every stored credential at start-up, see
`Catalog.reencrypt_legacy`), and `decrypt` refuses version 1, so an unbound ciphertext can
never again be accepted in a context it was not written for.
"""

from __future__ import annotations

import hashlib
import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mtai.errors import ConfigurationError

LEGACY = b"\x01"
BOUND = b"\x02"


def credential_context(tenant_id: uuid.UUID, provider: str) -> str:
    return f"provider-credential|{tenant_id}|{provider}"


def model_context(name: str) -> str:
    return f"model|{name}"


class LegacyCiphertext(ConfigurationError):
    """A version-1 ciphertext met after the start-up step should have re-encrypted it."""


class SecretBox:
    def __init__(self, key_material: str) -> None:
        # Any strong string works as the key: it is stretched to 32 bytes by SHA-256.
        self._aead = AESGCM(hashlib.sha256(key_material.encode()).digest())

    def encrypt(self, plaintext: str, *, context: str) -> bytes:
        nonce = os.urandom(12)
        return BOUND + nonce + self._aead.encrypt(nonce, plaintext.encode(), _bound(context))

    def decrypt(self, blob: bytes, *, context: str) -> str:
        if blob.startswith(LEGACY):
            raise LegacyCiphertext(
                "a stored provider credential is still in the old, unbound format; restart the "
                "server (it re-encrypts them at start-up) or enter the credential again."
            )
        if not blob.startswith(BOUND):
            raise ConfigurationError(
                "a stored provider credential has an unknown format; enter it again."
            )
        return self._open(blob, _bound(context))

    @staticmethod
    def is_legacy(blob: bytes) -> bool:
        return blob.startswith(LEGACY)

    def upgrade(self, blob: bytes, *, context: str) -> bytes:
        """A version-1 ciphertext re-encrypted as version 2, bound to `context`."""
        if not blob.startswith(LEGACY):
            raise ValueError("not a version-1 ciphertext")
        return self.encrypt(self._open(blob, LEGACY), context=context)

    def _open(self, blob: bytes, associated: bytes) -> str:
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], associated).decode()
        except InvalidTag as exc:
            raise ConfigurationError(
                "a stored provider credential cannot be decrypted: MTAI_ENCRYPTION_KEY changed, "
                "or the ciphertext was written for another tenant, provider or model. Restore "
                "the old key, or enter the credential again."
            ) from exc


def _bound(context: str) -> bytes:
    return BOUND + context.encode()
