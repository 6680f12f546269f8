"""Resolving the JWT secret and key pepper: required in production, generated in development."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass

from mtai.config import Settings, secret_problem
from mtai.errors import ConfigurationError
from mtai.logging import get_logger

log = get_logger(__name__)
DEV_SECRETS_FILE = "dev-secrets.json"


@dataclass(frozen=True)
class ResolvedSecrets:
    jwt_secret: str
    key_pepper: str


def resolve(settings: Settings) -> ResolvedSecrets:
    named = {"MTAI_JWT_SECRET": settings.jwt_secret, "MTAI_KEY_PEPPER": settings.key_pepper}
    problems = [p for name, value in named.items() if (p := secret_problem(name, value))]
    if not problems:
        assert settings.jwt_secret is not None
        assert settings.key_pepper is not None
        return ResolvedSecrets(
            settings.jwt_secret.get_secret_value(), settings.key_pepper.get_secret_value()
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


def _development_secrets(settings: Settings) -> ResolvedSecrets:
    """Random secrets kept under the data dir, so tokens and keys survive restarts."""
    path = settings.data_dir / DEV_SECRETS_FILE
    if path.exists():
        stored = json.loads(path.read_text())
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        stored = {"jwt_secret": secrets.token_urlsafe(48), "key_pepper": secrets.token_urlsafe(48)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle)
        log.info("dev_secrets.generated", path=str(path))
    jwt = settings.jwt_secret.get_secret_value() if settings.jwt_secret else stored["jwt_secret"]
    pepper = settings.key_pepper.get_secret_value() if settings.key_pepper else stored["key_pepper"]
    return ResolvedSecrets(jwt or stored["jwt_secret"], pepper or stored["key_pepper"])
