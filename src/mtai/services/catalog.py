"""The model catalog: platform models and prices, which models a tenant may use, and with whose key.

Reads go through the same process cache as authentication (invalidated by NOTIFY on change),
so choosing a model costs no database round trip on the request path.
"""

from __future__ import annotations

import asyncio
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from mtai.db.engine import Database
from mtai.db.repositories import credentials as credentials_repo
from mtai.db.repositories import models as models_repo
from mtai.errors import AppError, ConfigurationError, Forbidden, InvalidInput, NotFound
from mtai.logging import get_logger
from mtai.providers.egress import EgressPolicy, EgressRefused
from mtai.providers.llm.capabilities import MODEL_FLAGS
from mtai.providers.llm.conversation import Usage
from mtai.providers.llm.registry import Endpoint
from mtai.services import audit
from mtai.services import tenant_settings as tenant_settings_model
from mtai.services.auth_cache import AuthCache
from mtai.services.crypto import LEGACY, SecretBox, credential_context, model_context
from mtai.services.invalidation import invalidate
from mtai.services.principal import Principal

PROVIDERS = ("openai", "anthropic", "bedrock", "local", "extractive")
CATALOG_KEY = "catalog"
log = get_logger(__name__)
EXTRACTIVE = "extractive"


class UnusableCredential(AppError):
    """A tenant's stored provider key that does not decrypt for that tenant and provider."""

    status_code = 500
    code = "credential_unusable"


def credentials_key(tenant_id: uuid.UUID) -> str:
    return f"creds:{tenant_id}"


class ModelDefinition(BaseModel):
    """A catalog entry as an operator writes it (API body or models file)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
    provider: str = Field(pattern="^(" + "|".join(PROVIDERS) + ")$")
    upstream_model: str = Field(min_length=1, max_length=200)
    base_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")
    region: str | None = Field(default=None, max_length=32)
    api_key: str | None = Field(default=None, max_length=4000)
    context_window: int = Field(gt=0, le=10_000_000)
    max_output_tokens: int = Field(gt=0, le=1_000_000)
    input_price_per_1m: Decimal = Field(ge=0, le=100_000, decimal_places=6)
    output_price_per_1m: Decimal = Field(ge=0, le=100_000, decimal_places=6)
    timeout_seconds: float = Field(default=60.0, gt=0, le=900)
    max_retries: int = Field(default=2, ge=0, le=10)
    fallbacks: list[str] = Field(default_factory=list, max_length=10)
    enabled: bool = True
    # Prompt-cache prices; absent: cached tokens cost the input price.
    cached_input_price_per_1m: Decimal | None = Field(
        default=None, ge=0, le=100_000, decimal_places=6
    )
    cache_write_price_per_1m: Decimal | None = Field(
        default=None, ge=0, le=100_000, decimal_places=6
    )
    # What the model itself can do (tools, vision, json_schema); an absent flag is True.
    capabilities: dict[str, StrictBool] = Field(default_factory=dict)
    drop_params: bool = False

    @field_validator("capabilities")
    @classmethod
    def _known_flags(cls, value: dict[str, bool]) -> dict[str, bool]:
        unknown = sorted(set(value) - set(MODEL_FLAGS))
        if unknown:
            raise ValueError(
                f"unknown capability {', '.join(unknown)}; known: {', '.join(MODEL_FLAGS)}"
            )
        return value


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str
    upstream_model: str
    base_url: str | None
    region: str | None
    api_key: str | None = field(repr=False)
    context_window: int
    max_output_tokens: int
    input_price_per_1m: Decimal
    output_price_per_1m: Decimal
    timeout_seconds: float
    max_retries: int
    fallbacks: tuple[str, ...]
    enabled: bool
    # Prompt-cache prices; None: the input price (what a provider without a cache charges).
    cached_input_price_per_1m: Decimal | None = None
    cache_write_price_per_1m: Decimal | None = None
    # The model's own abilities (tools, vision, json_schema): False refuses requests using
    # them even where the provider's API could carry them. Absent: True.
    capabilities: Mapping[str, bool] = field(default_factory=dict)
    drop_params: bool = False  # drop settings this model cannot honour instead of refusing

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """Exact: prices are per million tokens, kept as decimals end to end."""
        return (
            prompt_tokens * self.input_price_per_1m + completion_tokens * self.output_price_per_1m
        ) / Decimal(1_000_000)

    def cost_of(self, usage: Usage) -> Decimal:
        """What `usage` costs, prompt-cache reads and writes at their own prices."""
        read = min(usage.cached_read_tokens, usage.prompt_tokens)
        written = min(usage.cached_write_tokens, usage.prompt_tokens - read)
        fresh = usage.prompt_tokens - read - written
        read_price = self.cached_input_price_per_1m
        write_price = self.cache_write_price_per_1m
        return (
            fresh * self.input_price_per_1m
            + read * (self.input_price_per_1m if read_price is None else read_price)
            + written * (self.input_price_per_1m if write_price is None else write_price)
            + usage.completion_tokens * self.output_price_per_1m
        ) / Decimal(1_000_000)


def _price(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value)


DEFAULT_MODELS = [
    ModelDefinition(
        name=EXTRACTIVE,
        provider="extractive",
        upstream_model="extractive",
        context_window=32_768,
        max_output_tokens=4_096,
        input_price_per_1m=Decimal(0),
        output_price_per_1m=Decimal(0),
        timeout_seconds=30,
        max_retries=0,
    ),
]


class Catalog:
    def __init__(
        self,
        db: Database,
        cache: AuthCache[object],
        box: SecretBox,
        *,
        default_model: str,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.db = db
        self.cache = cache
        self.box = box
        self.default_model = default_model
        self.egress = egress or EgressPolicy()

    # -- reads (cached) --------------------------------------------------------------------

    async def models(self) -> dict[str, ModelSpec]:
        hit, value = self.cache.get(CATALOG_KEY)
        if hit and isinstance(value, dict):
            return value
        since = self.cache.stamp()
        async with self.db.unscoped() as session:
            rows = await models_repo.list_all(session)
        specs = {
            row.name: ModelSpec(
                name=row.name,
                provider=row.provider,
                upstream_model=row.upstream_model,
                base_url=row.base_url,
                region=row.region,
                api_key=self.box.decrypt(row.api_key_encrypted, context=model_context(row.name))
                if row.api_key_encrypted
                else None,
                context_window=row.context_window,
                max_output_tokens=row.max_output_tokens,
                input_price_per_1m=Decimal(row.input_price_per_1m),
                output_price_per_1m=Decimal(row.output_price_per_1m),
                timeout_seconds=row.timeout_seconds,
                max_retries=row.max_retries,
                fallbacks=tuple(row.fallbacks),
                enabled=row.enabled,
                cached_input_price_per_1m=_price(row.cached_input_price_per_1m),
                cache_write_price_per_1m=_price(row.cache_write_price_per_1m),
                # Read-only: one spec is shared by every request until the catalog changes.
                capabilities=MappingProxyType(
                    {k: v for k, v in row.capabilities.items() if k in MODEL_FLAGS}
                ),
                drop_params=row.drop_params,
            )
            for row in rows
        }
        self.cache.put(CATALOG_KEY, specs, since)
        return specs

    async def allowed(self, tenant_settings: dict[str, Any]) -> list[ModelSpec]:
        policy = tenant_settings_model.parse(tenant_settings)
        enabled = [m for m in (await self.models()).values() if m.enabled]
        if policy.allowed_models is None:
            return enabled
        return [m for m in enabled if m.name in policy.allowed_models]

    async def resolve(self, tenant_settings: dict[str, Any], name: str | None) -> ModelSpec:
        """The model a request uses: 404 for an unknown model, 403 for one not allowed here."""
        allowed = await self.allowed(tenant_settings)
        by_name = {m.name: m for m in allowed}
        if name is None:
            policy = tenant_settings_model.parse(tenant_settings)
            for candidate in (policy.default_model, self.default_model):
                if candidate in by_name:
                    return by_name[candidate]
            if allowed:
                return allowed[0]
            raise Forbidden(
                "No model is enabled for this tenant; ask an administrator.",
                code="model_not_allowed",
            )
        if name in by_name:
            return by_name[name]
        known = await self.models()
        if name not in known or not known[name].enabled:
            raise NotFound(
                f"Model '{name}' does not exist. GET /api/v1/chat/models lists yours.",
                code="model_not_found",
            )
        raise Forbidden(
            f"Model '{name}' is not enabled for this tenant. "
            f"Allowed: {', '.join(sorted(by_name)) or 'none'}.",
            code="model_not_allowed",
        )

    async def chain(self, tenant_settings: dict[str, Any], primary: ModelSpec) -> list[ModelSpec]:
        """The primary and its fallbacks, in order, keeping only those the tenant may use."""
        by_name = {m.name: m for m in await self.allowed(tenant_settings)}
        chain = [primary]
        for name in primary.fallbacks:
            if name in by_name and by_name[name] not in chain:
                chain.append(by_name[name])
        return chain

    async def endpoint(self, tenant_id: uuid.UUID, spec: ModelSpec) -> Endpoint:
        """Where to send `spec`, with the tenant's own key for that provider if it has one.

        A base URL the tenant chose is marked for the egress guard; the catalog's own is not.
        """
        own = (await self._tenant_credentials(tenant_id)).get(spec.provider)
        if own is None:
            return Endpoint(
                provider=spec.provider,
                base_url=spec.base_url,
                api_key=spec.api_key,
                region=spec.region,
                context_window=spec.context_window,
                timeout=spec.timeout_seconds,
            )
        api_key, own_url = own
        if api_key is None:
            raise UnusableCredential(
                f"This tenant's stored {spec.provider} credential cannot be decrypted (it was not "
                "written for this tenant and provider, or the platform's encryption key "
                "changed); a tenant admin enters it again with PUT "
                f"/api/v1/provider-credentials/{spec.provider}."
            )
        return Endpoint(
            provider=spec.provider,
            base_url=own_url or spec.base_url,
            api_key=api_key,
            region=spec.region,
            context_window=spec.context_window,
            timeout=spec.timeout_seconds,
            owner=tenant_id,
            tenant_url=own_url is not None,
        )

    async def _tenant_credentials(
        self, tenant_id: uuid.UUID
    ) -> dict[str, tuple[str | None, str | None]]:
        """provider -> (key, base URL); the key is None when it does not decrypt here."""
        hit, value = self.cache.get(credentials_key(tenant_id))
        if hit and isinstance(value, dict):
            return value
        since = self.cache.stamp()
        async with self.db.tenant(tenant_id) as session:
            rows = await credentials_repo.list_for(session, tenant_id)
        found: dict[str, tuple[str | None, str | None]] = {}
        for row in rows:
            try:
                key: str | None = self.box.decrypt(
                    row.api_key_encrypted, context=credential_context(tenant_id, row.provider)
                )
            except ConfigurationError as exc:
                # Never another tenant's key, never the platform's instead: this one is unusable.
                log.error(
                    "credential.undecryptable",
                    tenant_id=str(tenant_id),
                    provider=row.provider,
                    error=str(exc),
                )
                key = None
            found[row.provider] = (key, row.base_url)
        self.cache.put(credentials_key(tenant_id), found, since)
        return found

    # -- platform administration -----------------------------------------------------------

    async def put_model(self, actor: Principal | None, definition: ModelDefinition) -> ModelSpec:
        if actor is not None:
            actor.require_platform_admin()
        values = definition.model_dump(exclude={"api_key"})
        if definition.api_key is not None:
            values["api_key_encrypted"] = self.box.encrypt(
                definition.api_key, context=model_context(definition.name)
            )
        async with self.db.platform() as session:
            await models_repo.upsert(session, values)
            await audit.record(
                session,
                actor,
                "model.put",
                tenant_id=None,
                target_type="model",
                target_id=definition.name,
                details={"provider": definition.provider, "enabled": definition.enabled},
            )
            await invalidate(session, self.cache, CATALOG_KEY)
        return (await self.models())[definition.name]

    async def delete_model(self, actor: Principal, name: str) -> None:
        actor.require_platform_admin()
        if name == EXTRACTIVE:
            raise InvalidInput(
                "The extractive answerer is built in; disable it instead of deleting it."
            )
        async with self.db.platform() as session:
            row = await models_repo.get(session, name)
            if row is None:
                raise NotFound(f"Model '{name}' does not exist.", code="model_not_found")
            await models_repo.delete(session, row)
            await audit.record(
                session, actor, "model.delete", tenant_id=None, target_type="model", target_id=name
            )
            await invalidate(session, self.cache, CATALOG_KEY)

    async def reencrypt_legacy(self) -> int:
        """Re-encrypts every credential and model key still in the unbound version-1 format,
        binding each to its tenant and provider (or model); returns how many. Run at every
        start, before anything decrypts, so version 1 can be refused from then on."""
        changed = 0
        async with self.db.platform() as session:
            for credential in await credentials_repo.with_version(session, LEGACY):
                old = credential.api_key_encrypted
                context = credential_context(credential.tenant_id, credential.provider)
                new = self.box.upgrade(old, context=context)
                await credentials_repo.replace_ciphertext(
                    session, credential.tenant_id, credential.provider, old, new
                )
                await invalidate(session, self.cache, credentials_key(credential.tenant_id))
                changed += 1
            for model in await models_repo.with_key_version(session, LEGACY):
                old_key = model.api_key_encrypted
                assert old_key is not None  # selected by its first byte
                new_key = self.box.upgrade(old_key, context=model_context(model.name))
                await models_repo.replace_key_ciphertext(session, model.name, old_key, new_key)
                changed += 1
            if changed:
                await invalidate(session, self.cache, CATALOG_KEY)
        if changed:
            log.info("credentials.reencrypted", count=changed)
        return changed

    async def ensure_defaults(self) -> None:
        known = await self.models()
        for definition in DEFAULT_MODELS:
            if definition.name not in known:
                await self.put_model(None, definition)

    async def load_file(self, path: Path) -> list[str]:
        """Upsert every `[[models]]` table of a TOML file; returns the names loaded."""
        try:
            data = tomllib.loads(await asyncio.to_thread(path.read_text))
            definitions = [ModelDefinition.model_validate(m) for m in data.get("models", [])]
        except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
            raise ConfigurationError(f"MTAI_MODELS_FILE {path} is not usable: {exc}") from exc
        for definition in definitions:
            await self.put_model(None, definition)
        return [d.name for d in definitions]

    # -- tenant-supplied credentials -------------------------------------------------------

    async def set_credential(
        self, actor: Principal, provider: str, api_key: str, base_url: str | None
    ) -> None:
        tenant_id = actor.require_tenant_admin()
        if provider == "bedrock":
            access, _, secret = api_key.partition(":")
            if not access.strip() or not secret.strip():
                # Without both, the AWS SDK would fall back to the platform's own identity.
                raise InvalidInput(
                    "A Bedrock credential is ACCESS_KEY_ID:SECRET_ACCESS_KEY, both parts "
                    "required; the platform's own AWS identity is never used for a tenant.",
                    code="invalid_credential",
                )
        if base_url is not None:
            try:
                await self.egress.vet_url(base_url)
            except EgressRefused as exc:
                raise InvalidInput(str(exc), code="base_url_refused") from exc
        async with self.db.tenant(tenant_id) as session:
            await credentials_repo.put(
                session,
                tenant_id=tenant_id,
                provider=provider,
                api_key_encrypted=self.box.encrypt(
                    api_key, context=credential_context(tenant_id, provider)
                ),
                base_url=base_url,
            )
            await audit.record(
                session,
                actor,
                "credential.put",
                tenant_id=tenant_id,
                target_type="provider",
                target_id=provider,
            )
            await invalidate(session, self.cache, credentials_key(tenant_id))

    async def remove_credential(self, actor: Principal, provider: str) -> None:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            if not await credentials_repo.remove(session, tenant_id, provider):
                raise NotFound(f"No credential for provider '{provider}'.")
            await audit.record(
                session,
                actor,
                "credential.delete",
                tenant_id=tenant_id,
                target_type="provider",
                target_id=provider,
            )
            await invalidate(session, self.cache, credentials_key(tenant_id))

    async def list_credentials(self, actor: Principal) -> list[tuple[str, str | None]]:
        """(provider, base_url) pairs; the keys themselves never leave the server."""
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            rows = await credentials_repo.list_for(session, tenant_id)
        return [(row.provider, row.base_url) for row in rows]
