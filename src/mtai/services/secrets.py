"""Resolving the JWT secret and key pepper: required in production, generated in development."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from mtai.config import Settings, secret_problem
from mtai.errors import ConfigurationError
from mtai.logging import get_logger

log = get_logger(__name__)
DEV_SECRETS_FILE = "dev-secrets.json"


@dataclass(frozen=True)
class ResolvedSecrets:
    jwt_secret: str
    key_pepper: str
    encryption_key: str


def resolve(settings: Settings) -> ResolvedSecrets:
    named = {
        "MTAI_JWT_SECRET": settings.jwt_secret,
        "MTAI_KEY_PEPPER": settings.key_pepper,
        "MTAI_ENCRYPTION_KEY": settings.encryption_key,
    }
    problems = [p for name, value in named.items() if (p := secret_problem(name, value))]
    if not problems:
        assert settings.jwt_secret is not None
        assert settings.key_pepper is not None
        assert settings.encryption_key is not None
        return ResolvedSecrets(
            settings.jwt_secret.get_secret_value(),
            settings.key_pepper.get_secret_value(),
            settings.encryption_key.get_secret_value(),
        )
    if not settings.is_development:
        raise ConfigurationError(
            "Refusing to start in production: "
            + "; ".join(problems)
            + ". Set each to a random value of 32+ characters, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'` "
            "(or MTAI_ENV=development on a laptop)."
        )
    return _development_secrets(settings)


def _publish(path: Path, stored: dict[str, str], *, existed: bool) -> dict[str, str]:
    """Write the secrets file; when several processes start at once (an API and a worker on
    one data volume), the first to create it wins and the others adopt its secrets."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(stored, handle)
    try:
        if existed:
            partial.replace(path)  # an older file lacking a secret: complete it
        else:
            os.link(partial, path)  # fails if another process created it meanwhile
    except FileExistsError:
        won: dict[str, str] = json.loads(path.read_text())
        return won
    finally:
        partial.unlink(missing_ok=True)
    return stored


def _development_secrets(settings: Settings) -> ResolvedSecrets:
    """Random secrets kept under the data dir, so tokens and keys survive restarts."""
    path = settings.data_dir / DEV_SECRETS_FILE
    existed = path.exists()
    stored = json.loads(path.read_text()) if existed else {}
    missing = [
        name for name in ("jwt_secret", "key_pepper", "encryption_key") if name not in stored
    ]
    if missing:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        stored |= {name: secrets.token_urlsafe(48) for name in missing}
        stored = _publish(path, stored, existed=existed)
        log.info("dev_secrets.generated", path=str(path), names=missing)

    def pick(value: SecretStr | None, name: str) -> str:
        return (value.get_secret_value() if value else "") or str(stored[name])

    return ResolvedSecrets(
        pick(settings.jwt_secret, "jwt_secret"),
        pick(settings.key_pepper, "key_pepper"),
        pick(settings.encryption_key, "encryption_key"),
    )
