"""Signing in through a tenant's OpenID Connect provider: who may come in, and how.

A person signs in to tenant T only through T's provider, and is found by the subject that
provider vouches for (`issuer` + `sub`, bound on first sign-in), never by matching an email.
A first sign-in needs a pre-authorisation in T: a pending invitation for the email, a SCIM user
the provider pushed, or just-in-time provisioning for an email in one of T's verified domains.
It creates a new identity (no password) bound to the subject; an email that already belongs to
an identity is not taken over: the person signs in to it and links the provider (consent).
The flow's state travels in an encrypted, short-lived cookie bound to the browser that began
it; the session is handed to the web UI through a second one, never in a URL.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.engine import Database
from mtai.db.models import SsoProvider, User
from mtai.db.repositories import invitations as invitations_repo
from mtai.db.repositories import memberships as memberships_repo
from mtai.db.repositories import scim as scim_repo
from mtai.db.repositories import sso as sso_repo
from mtai.db.repositories import tenants as tenants_repo
from mtai.db.repositories import users as users_repo
from mtai.errors import (
    AppError,
    ConfigurationError,
    Forbidden,
    InvalidInput,
    Unauthorized,
)
from mtai.logging import get_logger
from mtai.providers.cache.stores import CacheStore
from mtai.providers.oidc import Authorization, ClientConfig, Identity, OidcClient, OidcError
from mtai.services import audit, group_roles
from mtai.services.auth import member_cache_key, user_cache_key
from mtai.services.auth_cache import AuthCache
from mtai.services.crypto import SecretBox
from mtai.services.invalidation import invalidate
from mtai.services.invitations import is_pending
from mtai.services.principal import Principal, Role
from mtai.services.sso_settings import DEFAULT_SCOPES, secret_context

log = get_logger(__name__)
NOT_SET_UP = (
    "Single sign-on is not set up for this organisation; sign in with your password or ask "
    "your administrator."
)
NOT_PROVISIONED = (
    "Your identity provider signed you in, but this organisation has not given you access: ask "
    "its administrator for an invitation. If you already have an mtai account with this email, "
    "sign in with it and link single sign-on from your account page."
)


class SsoFailed(AppError):
    """A sign-in that cannot complete; the web UI shows `detail`, `code` names the cause."""

    status_code = 403


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower()


@dataclass(frozen=True)
class Started:
    authorization_url: str
    flow_cookie: str


@dataclass(frozen=True)
class SignedIn:
    user_id: uuid.UUID
    tenant_id: uuid.UUID


class SsoService:
    def __init__(
        self,
        db: Database,
        cache: AuthCache[object],
        box: SecretBox,
        oidc: OidcClient,
        used: CacheStore,
        *,
        flow_seconds: int,
        handoff_seconds: int = 120,
    ) -> None:
        self.db = db
        self.cache = cache
        self.box = box
        self.oidc = oidc
        self.used = used  # hand-offs already redeemed, in every process
        self.flow_seconds = flow_seconds
        self.handoff_seconds = handoff_seconds

    async def begin(
        self,
        *,
        tenant_ref: str | None,
        email: str | None,
        redirect_uri: str,
        link_user: uuid.UUID | None = None,
    ) -> Started:
        tenant_id, provider = await self._provider_for(tenant_ref, email)
        config = self._client(provider, redirect_uri)
        try:
            flow = await self.oidc.authorization(config)
        except OidcError as exc:
            raise SsoFailed(
                f"The organisation's identity provider cannot be reached: {exc}", code=exc.code
            ) from exc
        sealed = {
            "t": str(tenant_id),
            "s": flow.state,
            "n": flow.nonce,
            "v": flow.code_verifier,
            "r": redirect_uri,
            "i": provider.issuer,
            "l": str(link_user) if link_user else None,
            "e": int(time.time()) + self.flow_seconds,
        }
        return Started(flow.url, self._seal(sealed, "sso-flow"))

    async def _provider_for(
        self, tenant_ref: str | None, email: str | None
    ) -> tuple[uuid.UUID, SsoProvider]:
        async with self.db.platform() as session:
            if tenant_ref:
                ref = tenant_ref.strip().lower()
                try:
                    tenant = await tenants_repo.get(session, uuid.UUID(ref))
                except ValueError:
                    tenant = await tenants_repo.get_by_slug(session, ref)
                provider = await sso_repo.get(session, tenant.id) if tenant else None
            elif email and "@" in email:
                found = await sso_repo.by_verified_domain(session, email_domain(email))
                provider = found[0] if len(found) == 1 else None
            else:
                raise InvalidInput("Name your organisation (its slug) or your work email.")
            tenant = await tenants_repo.get(session, provider.tenant_id) if provider else None
        if provider is None or tenant is None or not provider.enabled:
            raise SsoFailed(NOT_SET_UP, code="sso_not_configured")
        if tenant.status != "active":
            raise SsoFailed(
                "This organisation is suspended; ask your platform administrator.",
                code="tenant_suspended",
            )
        return tenant.id, provider

    def _client(self, provider: SsoProvider, redirect_uri: str) -> ClientConfig:
        try:
            secret = (
                self.box.decrypt(
                    provider.client_secret_encrypted, context=secret_context(provider.tenant_id)
                )
                if provider.client_secret_encrypted
                else None
            )
        except ConfigurationError as exc:
            log.error("sso.client_secret_unreadable", tenant_id=str(provider.tenant_id))
            raise SsoFailed(
                "Single sign-on of this organisation is misconfigured (its client secret cannot "
                "be read); ask its administrator to enter the secret again.",
                code="sso_misconfigured",
            ) from exc
        return ClientConfig(
            issuer=provider.issuer,
            client_id=provider.client_id,
            client_secret=secret,
            scopes=tuple(provider.scopes or DEFAULT_SCOPES),
            redirect_uri=redirect_uri,
        )

    async def finish(
        self,
        flow_cookie: str | None,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
    ) -> SignedIn:
        """The provider sent the browser back: check the flow, the code and the ID token, then
        admit the person (or say why not)."""
        flow = self._open(flow_cookie, "sso-flow")
        if flow is None:
            raise SsoFailed(
                "This sign-in expired or was started in another browser; start again.",
                code="sso_state_invalid",
            )
        if error:
            # Grants nothing, so it needs no state (some providers omit it from errors).
            raise SsoFailed(
                "The identity provider did not sign you in; try again or ask your administrator.",
                code="sso_denied",
            )
        if not state or not hmac.compare_digest(str(flow["s"]), state):
            raise SsoFailed(
                "This sign-in does not match the one your browser started (a forged or stale "
                "link); start again.",
                code="sso_state_mismatch",
            )
        if not code:
            raise SsoFailed("The identity provider sent no sign-in code.", code="sso_denied")
        tenant_id = uuid.UUID(str(flow["t"]))
        async with self.db.tenant(tenant_id) as session:
            provider = await sso_repo.get(session, tenant_id)
        if provider is None or not provider.enabled or provider.issuer != flow["i"]:
            raise SsoFailed(NOT_SET_UP, code="sso_not_configured")
        config = self._client(provider, str(flow["r"]))
        authorization = Authorization("", str(flow["s"]), str(flow["n"]), str(flow["v"]))
        try:
            identity = await self.oidc.complete(config, code, authorization)
        except OidcError as exc:
            await self._denied(tenant_id, exc.code, {"issuer": provider.issuer})
            raise SsoFailed(str(exc), code=exc.code) from exc
        link = uuid.UUID(str(flow["l"])) if flow.get("l") else None
        try:
            return await self._admit(provider, identity, link)
        except IntegrityError:
            # A second sign-in of the same person raced this one to the binding; it won, so
            # this one now finds what it made.
            return await self._admit(provider, identity, link)

    async def _admit(
        self, provider: SsoProvider, identity: Identity, link: uuid.UUID | None
    ) -> SignedIn:
        tenant_id = provider.tenant_id
        email = identity.email
        if email is None or "@" not in email:
            await self._denied(tenant_id, "sso_no_email", {"subject": identity.subject})
            raise SsoFailed(
                "The identity provider sent no email address; your administrator must add the "
                "email scope or claim.",
                code="sso_no_email",
            )
        domain = email_domain(email)
        if identity.email_verified is False:
            await self._denied(tenant_id, "sso_email_unverified", {"email": email})
            raise SsoFailed(
                "Your identity provider says this email address is not verified.",
                code="sso_email_unverified",
            )
        if provider.allowed_domains and domain not in provider.allowed_domains:
            await self._denied(tenant_id, "sso_domain_denied", {"email": email})
            raise SsoFailed(
                f"Accounts of {domain} may not sign in to this organisation; ask its "
                "administrator.",
                code="sso_domain_denied",
            )
        groups = (
            group_roles.groups_from_claim(identity.claims.get(provider.groups_claim))
            if provider.groups_claim
            else None
        )
        now = datetime.now(UTC)
        async with self.db.platform() as session:
            await sso_repo.lock_subject(session, tenant_id, identity.issuer, identity.subject)
            binding = await sso_repo.identity(session, tenant_id, identity.issuer, identity.subject)
            user = await self._who(session, tenant_id, binding, link, identity)
            scim = (
                await scim_repo.by_user(session, tenant_id, user.id) if user is not None else None
            ) or await scim_repo.find_for_email(session, tenant_id, email)
            if scim is not None and not scim.active:
                await self._denied(tenant_id, "sso_deprovisioned", {"email": email})
                raise SsoFailed(
                    "Your organisation's directory has deactivated your access.",
                    code="sso_deprovisioned",
                )
            membership = await memberships_repo.get(session, tenant_id, user.id) if user else None
            if groups is None and scim is not None:
                # No groups in the ID token: the directory's groups, as SCIM pushed them.
                groups = await scim_repo.group_names(session, scim.id)
            mapped = (
                group_roles.role_for(provider.group_roles, groups) if groups is not None else None
            )
            if membership is None:
                invitation = await invitations_repo.open_for(session, tenant_id, email)
                if invitation is not None and not is_pending(invitation, now):
                    invitation = None
                jit = provider.jit_provisioning and domain in provider.verified_domains
                if invitation is None and scim is None and not jit:
                    await self._denied(tenant_id, "sso_not_provisioned", {"email": email})
                    raise SsoFailed(NOT_PROVISIONED, code="sso_not_provisioned")
                if user is None:
                    if await users_repo.get_by_email(session, email) is not None:
                        # Never taken over by email: the owner of that identity links it.
                        await self._denied(tenant_id, "sso_not_provisioned", {"email": email})
                        raise SsoFailed(NOT_PROVISIONED, code="sso_not_provisioned")
                    user = await users_repo.create(
                        session,
                        email=email,
                        password_hash=None,
                        display_name=identity.name,
                        email_verified=bool(
                            identity.email_verified and domain in provider.verified_domains
                        ),
                    )
                role = mapped or Role(
                    (invitation.role if invitation else None)
                    or (scim.suspended_role if scim else None)
                    or Role.MEMBER
                )
                await memberships_repo.add(
                    session, tenant_id=tenant_id, user_id=user.id, role=role.value
                )
                if invitation is not None:
                    await invitations_repo.update(
                        session, invitation, accepted_at=now, accepted_user_id=user.id
                    )
                how = "invitation" if invitation else "scim" if scim else "jit"
                await audit.record(
                    session,
                    Principal(tenant_id=tenant_id, user_id=user.id),
                    "sso.provision",
                    tenant_id=tenant_id,
                    target_type="user",
                    target_id=user.id,
                    details={"email": email, "role": role, "via": how},
                )
            elif user is not None and mapped is not None:
                await group_roles.apply(
                    session,
                    self.cache,
                    tenant_id,
                    user.id,
                    mapped,
                    action="user.role",
                    details={"via": "sso_groups"},
                )
            assert user is not None
            if not user.is_active:
                raise SsoFailed(
                    "This account is disabled; ask an administrator.", code="account_disabled"
                )
            if scim is not None and scim.user_id is None:
                await scim_repo.bind(session, scim, user.id)
            if binding is None:
                await sso_repo.bind(
                    session,
                    tenant_id=tenant_id,
                    issuer=identity.issuer,
                    subject=identity.subject,
                    user_id=user.id,
                    email=email,
                    now=now,
                )
            else:
                await sso_repo.touch(session, binding, email=email, now=now)
            await audit.record(
                session,
                Principal(tenant_id=tenant_id, user_id=user.id),
                "sso.link" if link else "sso.login",
                tenant_id=tenant_id,
                target_type="user",
                target_id=user.id,
                details={"issuer": identity.issuer, "subject": identity.subject},
            )
            await invalidate(
                session,
                self.cache,
                member_cache_key(tenant_id, user.id),
                user_cache_key(user.id),
            )
        return SignedIn(user.id, tenant_id)

    async def _who(
        self,
        session: AsyncSession,
        tenant_id: uuid.UUID,
        binding: Any,
        link: uuid.UUID | None,
        identity: Identity,
    ) -> User | None:
        """The identity this subject is (or, when linking, becomes) bound to."""
        if link is None:
            return await users_repo.get(session, binding.user_id) if binding else None
        if binding is not None and binding.user_id != link:
            raise SsoFailed(
                "This identity-provider account is already linked to another mtai account.",
                code="sso_identity_taken",
            )
        other = await sso_repo.identity_of_user(session, tenant_id, link)
        if other is not None and (other.issuer, other.subject) != (
            identity.issuer,
            identity.subject,
        ):
            raise SsoFailed(
                "Your mtai account is already linked to another account of this organisation's "
                "identity provider.",
                code="sso_identity_taken",
            )
        user = await users_repo.get(session, link)
        if user is None:
            raise SsoFailed("This account no longer exists.", code="invalid_token")
        return user

    async def _denied(self, tenant_id: uuid.UUID, reason: str, details: dict[str, Any]) -> None:
        async with self.db.platform() as session:
            await audit.record(
                session,
                None,
                "sso.denied",
                tenant_id=tenant_id,
                target_type="sso_provider",
                target_id=tenant_id,
                details={"reason": reason, **details},
            )

    # -- handing the session to the web UI ------------------------------------------------

    def handoff(self, outcome: SignedIn | AppError) -> str:
        """The sealed outcome the web UI trades at /exchange: a session, or why there is none
        (kept out of the URL, where anyone could write a message onto our page)."""
        sealed: dict[str, Any] = (
            {"u": str(outcome.user_id), "t": str(outcome.tenant_id)}
            if isinstance(outcome, SignedIn)
            else {"c": outcome.code, "m": outcome.detail[:1000]}
        )
        return self._seal(
            {
                **sealed,
                "i": secrets.token_urlsafe(16),
                "e": int(time.time()) + self.handoff_seconds,
            },
            "sso-handoff",
        )

    async def redeem(self, cookie: str | None) -> SignedIn:
        """Once: a copy of the cookie (from a shared machine's disk, say) finds it used."""
        sealed = self._open(cookie, "sso-handoff")
        if sealed is None or not await self.used.first(
            f"sso:handoff:{sealed.get('i')}", self.handoff_seconds + 60
        ):
            raise Unauthorized(
                "No single sign-on is waiting to be completed here; sign in again.",
                code="sso_handoff_invalid",
            )
        if "c" in sealed:
            raise SsoFailed(str(sealed["m"]), code=str(sealed["c"]))
        return SignedIn(uuid.UUID(str(sealed["u"])), uuid.UUID(str(sealed["t"])))

    def _seal(self, payload: dict[str, Any], context: str) -> str:
        return self.box.encrypt(json.dumps(payload), context=context).hex()

    def _open(self, cookie: str | None, context: str) -> dict[str, Any] | None:
        if not cookie or len(cookie) > 8192:
            return None
        try:
            payload = json.loads(self.box.decrypt(bytes.fromhex(cookie), context=context))
        except (ValueError, ConfigurationError):  # tampered or foreign: no flow at all
            return None
        if not isinstance(payload, dict) or int(payload.get("e", 0)) < time.time():
            return None
        return payload

    @staticmethod
    def linking_user(actor: Principal) -> uuid.UUID:
        """Linking is for a person signed in with their own login, not an API key."""
        if actor.user_id is None or actor.api_key_id is not None:
            raise Forbidden(
                "Link single sign-on while signed in as yourself (not with an API key).",
                code="login_required",
            )
        return actor.user_id
