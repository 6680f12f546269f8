"""A tenant's single sign-on settings: its OpenID Connect provider, email domains (verified by
platform administrators), group-to-role mapping, enforcement and SCIM token.

Tenant admins configure; changes that can make or unmake owners (a group mapped to owner,
enforcement, removal) are an owner's. Every change is audited, and the tenant's cached state
(which carries enforcement) is invalidated in every process.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from mtai.db.engine import Database
from mtai.db.models import SsoProvider
from mtai.db.repositories import sso as sso_repo
from mtai.errors import Conflict, Forbidden, InvalidInput, NotFound
from mtai.providers.oidc import OidcClient, OidcError
from mtai.services import audit, group_roles
from mtai.services.auth import tenant_cache_key
from mtai.services.auth_cache import AuthCache
from mtai.services.crypto import SecretBox
from mtai.services.invalidation import invalidate
from mtai.services.principal import Principal, Role

SCIM_MARK = "scim_"
DEFAULT_SCOPES = ("openid", "email", "profile")


def secret_context(tenant_id: uuid.UUID) -> str:
    return f"sso-client-secret|{tenant_id}"


def scim_digest(token: str) -> bytes:
    # 256 random bits: a plain SHA-256 cannot be reversed or guessed.
    return hashlib.sha256(token.encode()).digest()


def normalise_domains(domains: list[str]) -> list[str]:
    cleaned = sorted({d.strip().lower().lstrip("@") for d in domains if d.strip()})
    for domain in cleaned:
        if "." not in domain or len(domain) > 253 or any(c in domain for c in " /@:"):
            raise InvalidInput(f"{domain!r} is not a domain name (example: example.com).")
    return cleaned


def require_owner(actor: Principal, what: str) -> None:
    if actor.role is not Role.OWNER:
        raise Forbidden(f"Only an owner of the tenant can {what}.", code="owner_required")


@dataclass(frozen=True)
class ProviderInput:
    issuer: str
    client_id: str
    client_secret: str | None  # None: keep the stored one
    scopes: list[str]
    allowed_domains: list[str]
    groups_claim: str | None
    group_roles: dict[str, str]
    jit_provisioning: bool
    enforce_sso: bool
    enabled: bool


class SsoSettings:
    def __init__(
        self, db: Database, cache: AuthCache[object], box: SecretBox, oidc: OidcClient
    ) -> None:
        self.db = db
        self.cache = cache
        self.box = box
        self.oidc = oidc

    async def get(self, actor: Principal) -> SsoProvider:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            provider = await sso_repo.get(session, tenant_id)
        if provider is None:
            raise NotFound("No identity provider is configured for this tenant.")
        return provider

    async def configure(self, actor: Principal, given: ProviderInput) -> SsoProvider:
        tenant_id = actor.require_tenant_admin()
        mapping = group_roles.parse(given.group_roles)
        issuer = self._vet_issuer(given.issuer)
        scopes = sorted({*DEFAULT_SCOPES[:1], *(s.strip() for s in given.scopes if s.strip())})
        if any(len(s) > 100 or " " in s for s in scopes) or len(scopes) > 20:
            raise InvalidInput("Scopes are up to 20 single words (e.g. openid email profile).")
        allowed = normalise_domains(given.allowed_domains)
        # Discovery proves the issuer is a provider before anyone is sent there.
        try:
            metadata = await self.oidc.metadata(issuer)
        except OidcError as exc:
            raise InvalidInput(f"The issuer could not be used: {exc}", code=exc.code) from exc
        issuer = str(metadata["issuer"])  # exactly as the provider writes it into ID tokens
        async with self.db.tenant(tenant_id) as session:
            current = await sso_repo.get(session, tenant_id)
            previous = {str(g): str(r) for g, r in (current.group_roles if current else {}).items()}
            groups_claim = (given.groups_claim or "").strip() or None
            grants_owner = Role.OWNER in {Role(r) for r in {**previous, **mapping}.values()}
            vouching = (
                (current.issuer, current.client_id, current.groups_claim) if current else None
            )
            if grants_owner and (
                previous != {g: r.value for g, r in mapping.items()}
                or vouching != (issuer, given.client_id.strip(), groups_claim)
            ):
                # Whoever decides which groups make owners, or which provider (and which of its
                # claims) vouches for those groups, decides who is owner: an owner's decision.
                require_owner(
                    actor,
                    "change a group mapping to owner, or the issuer, client id or groups claim "
                    "under one",
                )
            enforced = current is not None and current.enforce_sso and current.enabled
            if given.enforce_sso != (current.enforce_sso if current else False) or (
                enforced and not given.enabled
            ):
                # Disabling the provider would lift enforcement too.
                require_owner(
                    actor, "require single sign-on, lift it, or disable it while required"
                )
            secret = (
                self.box.encrypt(given.client_secret, context=secret_context(tenant_id))
                if given.client_secret
                else (current.client_secret_encrypted if current else None)
            )
            fields: dict[str, Any] = {
                "issuer": issuer,
                "client_id": given.client_id.strip(),
                "client_secret_encrypted": secret,
                "scopes": scopes,
                "allowed_domains": allowed,
                # A domain no longer allowed is no longer verified either.
                "verified_domains": [
                    d for d in (current.verified_domains if current else []) if d in allowed
                ],
                "groups_claim": groups_claim,
                "group_roles": {g: r.value for g, r in mapping.items()},
                "jit_provisioning": given.jit_provisioning,
                "enforce_sso": given.enforce_sso,
                "enabled": given.enabled,
            }
            changed = sorted(
                k for k, v in fields.items() if current is None or getattr(current, k) != v
            )
            unbound = 0
            if current is not None and current.issuer != issuer:
                # Subjects are the old provider's: they mean nothing at the new one.
                unbound = await sso_repo.unbind_other_issuers(session, tenant_id, issuer)
            provider = await sso_repo.put(session, tenant_id, **fields)
            await audit.record(
                session,
                actor,
                "sso.configure",
                tenant_id=tenant_id,
                target_type="sso_provider",
                target_id=tenant_id,
                details={
                    "changed": [c.replace("_encrypted", "") for c in changed],
                    "issuer": issuer,
                    "enforce_sso": given.enforce_sso,
                    "jit_provisioning": given.jit_provisioning,
                    "bindings_removed": unbound,
                },
            )
            await invalidate(session, self.cache, tenant_cache_key(tenant_id))
        self.oidc.forget(issuer)
        return provider

    async def set_enforced(self, actor: Principal, enforced: bool) -> None:
        """Turn the requirement to sign in through the provider on or off (owners)."""
        tenant_id = actor.require_tenant_admin()
        require_owner(actor, "require single sign-on or lift it")
        async with self.db.tenant(tenant_id) as session:
            if await sso_repo.get(session, tenant_id) is None:
                raise NotFound("No identity provider is configured for this tenant.")
            await sso_repo.put(session, tenant_id, enforce_sso=enforced)
            await audit.record(
                session,
                actor,
                "sso.enforce" if enforced else "sso.unenforce",
                tenant_id=tenant_id,
                target_type="sso_provider",
                target_id=tenant_id,
            )
            await invalidate(session, self.cache, tenant_cache_key(tenant_id))

    async def remove(self, actor: Principal) -> None:
        tenant_id = actor.require_tenant_admin()
        require_owner(actor, "remove the identity provider")
        async with self.db.tenant(tenant_id) as session:
            provider = await sso_repo.get(session, tenant_id)
            if provider is None:
                raise NotFound("No identity provider is configured for this tenant.")
            await sso_repo.delete(session, provider)
            await audit.record(
                session,
                actor,
                "sso.remove",
                tenant_id=tenant_id,
                target_type="sso_provider",
                target_id=tenant_id,
            )
            await invalidate(session, self.cache, tenant_cache_key(tenant_id))

    async def set_domain_verified(
        self, actor: Principal, domain: str, *, verified: bool
    ) -> SsoProvider:
        """Platform administrators vouch that a tenant owns a domain (routing sign-in by email
        and just-in-time provisioning rely on it); one tenant per verified domain."""
        actor.require_platform_admin()
        tenant_id = actor.require_tenant()
        [domain] = normalise_domains([domain])
        async with self.db.platform() as session:
            provider = await sso_repo.get(session, tenant_id)
            if provider is None:
                raise NotFound("No identity provider is configured for this tenant.")
            if domain not in provider.allowed_domains:
                raise InvalidInput(
                    f"Add {domain} to the tenant's allowed domains before verifying it."
                )
            holders = [
                p
                for p in await sso_repo.by_verified_domain(session, domain)
                if p.tenant_id != tenant_id
            ]
            if verified and holders:
                raise Conflict(f"{domain} is verified for another tenant; unverify it there first.")
            domains = set(provider.verified_domains)
            domains = domains | {domain} if verified else domains - {domain}
            provider = await sso_repo.put(session, tenant_id, verified_domains=sorted(domains))
            await audit.record(
                session,
                actor,
                "sso.domain_verify" if verified else "sso.domain_unverify",
                tenant_id=tenant_id,
                target_type="sso_provider",
                target_id=tenant_id,
                details={"domain": domain},
            )
        return provider

    async def issue_scim_token(self, actor: Principal) -> str:
        """A new SCIM bearer token for the tenant, shown once; the previous one stops working.

        Owners only: the token's holder deprovisions anyone (owners included) and, through
        groups, sets roles."""
        tenant_id = actor.require_tenant_admin()
        require_owner(actor, "make a SCIM token")
        token = SCIM_MARK + secrets.token_urlsafe(32)
        async with self.db.tenant(tenant_id) as session:
            if await sso_repo.get(session, tenant_id) is None:
                raise NotFound(
                    "Configure the tenant's identity provider (PUT /api/v1/sso) before SCIM."
                )
            await sso_repo.put(session, tenant_id, scim_token_hash=scim_digest(token))
            await audit.record(
                session,
                actor,
                "sso.scim_token",
                tenant_id=tenant_id,
                target_type="sso_provider",
                target_id=tenant_id,
            )
        return token

    async def revoke_scim_token(self, actor: Principal) -> None:
        tenant_id = actor.require_tenant_admin()
        require_owner(actor, "revoke the SCIM token")
        async with self.db.tenant(tenant_id) as session:
            provider = await sso_repo.get(session, tenant_id)
            if provider is None or provider.scim_token_hash is None:
                raise NotFound("This tenant has no SCIM token.")
            await sso_repo.put(session, tenant_id, scim_token_hash=None)
            await audit.record(
                session,
                actor,
                "sso.scim_token_revoke",
                tenant_id=tenant_id,
                target_type="sso_provider",
                target_id=tenant_id,
            )

    def _vet_issuer(self, issuer: str) -> str:
        try:
            return self.oidc.vet_issuer(issuer)
        except OidcError as exc:
            raise InvalidInput(str(exc), code=exc.code) from exc
