"""Login, and turning a credential (access token or API key) into a Principal.

Credential checks read through the AuthCache: a warm process answers without Postgres.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mtai.db.engine import Database
from mtai.db.models import Tenant, User
from mtai.db.repositories import api_keys as keys_repo
from mtai.db.repositories import memberships as memberships_repo
from mtai.db.repositories import sso as sso_repo
from mtai.db.repositories import tenants as tenants_repo
from mtai.db.repositories import users as users_repo
from mtai.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from mtai.logging import get_logger
from mtai.services import audit, key_material, passwords, tokens
from mtai.services.auth_cache import AuthCache
from mtai.services.principal import ROLE_SCOPES, Principal, Role, Scope

log = get_logger(__name__)


@dataclass(frozen=True)
class TenantState:
    id: uuid.UUID
    slug: str
    active: bool
    settings: dict[str, Any]
    sso_enforced: bool = False  # members sign in through the tenant's identity provider


@dataclass(frozen=True)
class UserState:
    id: uuid.UUID
    active: bool
    is_platform_admin: bool
    token_version: int


@dataclass(frozen=True)
class KeyState:
    id: uuid.UUID
    tenant_id: uuid.UUID
    key_hash: bytes
    scopes: frozenset[Scope]
    expires_at: datetime | None
    revoked: bool
    limits: dict[str, Any]


@dataclass(frozen=True)
class LoginResult:
    access_token: str
    expires_in: int
    user: User
    tenant: Tenant | None
    role: Role | None
    tenants: list[tuple[Tenant, Role]]


def key_cache_key(prefix: str) -> str:
    return f"key:{prefix}"


def tenant_cache_key(tenant_id: uuid.UUID) -> str:
    return f"tenant:{tenant_id}"


def slug_cache_key(slug: str) -> str:
    return f"slug:{slug}"


def member_cache_key(tenant_id: uuid.UUID, user_id: uuid.UUID) -> str:
    return f"member:{tenant_id}:{user_id}"


def user_cache_key(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


SUSPENDED = "This tenant is suspended; ask your platform administrator to reactivate it."
SSO_REQUIRED = (
    "This organisation requires single sign-on: use 'Sign in with SSO' "
    "(GET /api/v1/auth/sso/start?tenant=<slug>)."
)


class LastUsedRecorder:
    """Collects API key use in memory and writes it in batches, off the request path."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._seen: dict[uuid.UUID, datetime] = {}

    def mark(self, key_id: uuid.UUID) -> None:
        self._seen[key_id] = datetime.now(UTC)

    async def flush(self) -> None:
        if not self._seen:
            return
        batch, self._seen = self._seen, {}
        async with self._db.platform() as session:
            await keys_repo.touch_last_used(session, batch)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:
                log.exception("last_used.flush_failed")


class Authenticator:
    def __init__(
        self,
        db: Database,
        cache: AuthCache[object],
        *,
        jwt_secret: str,
        key_pepper: str,
        jwt_ttl_seconds: int,
        last_used: LastUsedRecorder,
    ) -> None:
        self.db = db
        self.cache = cache
        self.jwt_secret = jwt_secret
        self.key_pepper = key_pepper
        self.jwt_ttl_seconds = jwt_ttl_seconds
        self.last_used = last_used

    # -- cached reads -------------------------------------------------------------------

    async def _tenant(self, tenant_id: uuid.UUID) -> TenantState | None:
        hit, value = self.cache.get(tenant_cache_key(tenant_id))
        if hit:
            return value if isinstance(value, TenantState) else None
        since = self.cache.stamp()
        async with self.db.platform() as session:
            tenant = await tenants_repo.get(session, tenant_id)
            enforced = tenant is not None and await sso_repo.enforced(session, tenant.id)
        state = (
            TenantState(
                tenant.id, tenant.slug, tenant.status == "active", dict(tenant.settings), enforced
            )
            if tenant
            else None
        )
        self.cache.put(tenant_cache_key(tenant_id), state, since)
        return state

    async def _tenant_by_slug(self, slug: str) -> TenantState | None:
        hit, value = self.cache.get(slug_cache_key(slug))
        if hit:
            return await self._tenant(value) if isinstance(value, uuid.UUID) else None
        since = self.cache.stamp()
        async with self.db.platform() as session:
            tenant = await tenants_repo.get_by_slug(session, slug)
        self.cache.put(slug_cache_key(slug), tenant.id if tenant else None, since)
        return await self._tenant(tenant.id) if tenant else None

    async def _user(self, user_id: uuid.UUID) -> UserState | None:
        hit, value = self.cache.get(user_cache_key(user_id))
        if hit:
            return value if isinstance(value, UserState) else None
        since = self.cache.stamp()
        async with self.db.platform() as session:
            user = await users_repo.get(session, user_id)
        state = (
            UserState(user.id, user.is_active, user.is_platform_admin, user.token_version)
            if user
            else None
        )
        self.cache.put(user_cache_key(user_id), state, since)
        return state

    async def _role(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
        hit, value = self.cache.get(member_cache_key(tenant_id, user_id))
        if hit:
            return value if isinstance(value, Role) else None
        since = self.cache.stamp()
        async with self.db.tenant(tenant_id) as session:
            membership = await memberships_repo.get(session, tenant_id, user_id)
        role = Role(membership.role) if membership else None
        self.cache.put(member_cache_key(tenant_id, user_id), role, since)
        return role

    async def _key(self, prefix: str) -> KeyState | None:
        hit, value = self.cache.get(key_cache_key(prefix))
        if hit:
            return value if isinstance(value, KeyState) else None
        since = self.cache.stamp()
        async with self.db.platform() as session:
            key = await keys_repo.get_by_prefix(session, prefix)
        state = (
            KeyState(
                id=key.id,
                tenant_id=key.tenant_id,
                key_hash=key.key_hash,
                scopes=frozenset(Scope(s) for s in key.scopes),
                expires_at=key.expires_at,
                revoked=key.revoked_at is not None,
                limits=dict(key.limits),
            )
            if key
            else None
        )
        self.cache.put(key_cache_key(prefix), state, since)
        return state

    async def tenant_settings(self, tenant_id: uuid.UUID) -> dict[str, Any]:
        state = await self._tenant(tenant_id)
        return state.settings if state is not None else {}

    async def resolve_tenant_ref(self, ref: str) -> TenantState | None:
        """A tenant named by id or slug, as X-Tenant-ID allows."""
        try:
            return await self._tenant(uuid.UUID(ref))
        except ValueError:
            return await self._tenant_by_slug(ref.strip().lower())

    # -- credentials --------------------------------------------------------------------

    async def authenticate(self, credential: str, tenant_header: str | None) -> Principal:
        if credential.startswith("mtai_"):
            return await self._from_api_key(credential, tenant_header)
        return await self._from_token(credential, tenant_header)

    async def _from_api_key(self, plaintext: str, tenant_header: str | None) -> Principal:
        invalid = Unauthorized("API key is invalid.", code="invalid_api_key")
        prefix = key_material.prefix_of(plaintext)
        if prefix is None:
            raise invalid
        state = await self._key(prefix)
        if state is None or not key_material.matches(self.key_pepper, plaintext, state.key_hash):
            raise invalid
        if state.revoked:
            raise Unauthorized("API key has been revoked.", code="api_key_revoked")
        if state.expires_at is not None and state.expires_at <= datetime.now(UTC):
            raise Unauthorized(
                "API key has expired; create or rotate a key.", code="api_key_expired"
            )
        tenant = await self._tenant(state.tenant_id)
        if tenant is None:
            raise invalid
        await self._check_header(tenant_header, tenant)
        if not tenant.active:
            raise Forbidden(SUSPENDED, code="tenant_suspended")
        self.last_used.mark(state.id)
        return Principal(
            tenant_id=tenant.id,
            api_key_id=state.id,
            role=Role.ADMIN if Scope.ADMIN in state.scopes else Role.MEMBER,
            scopes=state.scopes,
            key_limits=state.limits or None,
        )

    async def _check_header(self, tenant_header: str | None, tenant: TenantState) -> None:
        if tenant_header is None:
            return
        named = await self.resolve_tenant_ref(tenant_header)
        if named is None or named.id != tenant.id:
            raise Forbidden(
                "X-Tenant-ID does not match this credential's tenant; omit the header.",
                code="tenant_mismatch",
            )

    async def _from_token(self, token: str, tenant_header: str | None) -> Principal:
        claims = tokens.decode(self.jwt_secret, token)
        user = await self._user(claims.user_id)
        if user is None or not user.active:
            raise Unauthorized(
                "This account no longer exists or is disabled.", code="invalid_token"
            )
        if claims.version != user.token_version:
            raise Unauthorized(
                "This session was ended (password change, sign-out everywhere, or removal); "
                "log in again.",
                code="token_revoked",
            )
        if user.is_platform_admin and tenant_header is not None:
            tenant = await self.resolve_tenant_ref(tenant_header)
            if tenant is None:
                raise NotFound("No tenant matches X-Tenant-ID.", code="tenant_not_found")
            return Principal(
                tenant_id=tenant.id,
                user_id=user.id,
                role=Role.OWNER,
                scopes=ROLE_SCOPES[Role.OWNER],
                is_platform_admin=True,
            )
        if claims.tenant_id is None:
            if tenant_header is not None:
                raise Forbidden("This account belongs to no tenant.", code="tenant_mismatch")
            return Principal(
                tenant_id=None, user_id=user.id, is_platform_admin=user.is_platform_admin
            )
        tenant = await self._tenant(claims.tenant_id)
        if tenant is None:
            raise Unauthorized(
                "The token's tenant no longer exists; log in again.", code="invalid_token"
            )
        await self._check_header(tenant_header, tenant)
        if not tenant.active:
            raise Forbidden(SUSPENDED, code="tenant_suspended")
        role = await self._role(tenant.id, user.id)
        if role is None:
            raise Forbidden("You are no longer a member of this tenant.", code="not_a_member")
        if tenant.sso_enforced and claims.method != tokens.SSO and role is not Role.OWNER:
            # Enforcement turned on ends the password sessions of everyone but the owners.
            raise Unauthorized(SSO_REQUIRED, code="sso_required")
        return Principal(
            tenant_id=tenant.id,
            user_id=user.id,
            role=role,
            scopes=ROLE_SCOPES[role],
            is_platform_admin=user.is_platform_admin,
        )

    # -- login ----------------------------------------------------------------------------

    async def login(
        self, email: str, password: str, tenant_header: str | None, *, platform: bool = False
    ) -> LoginResult:
        user = await self.check_password(email, password)
        return await self._start(user, tenant_header, platform=platform)

    async def check_password(self, email: str, password: str) -> User:
        """The identity whose password this is (callers throttle guesses, api/routers/auth.py)."""
        async with self.db.platform() as session:
            user = await users_repo.get_by_email(session, email.strip().lower())
        ok = await passwords.verify_password(user.password_hash if user else None, password)
        if user is None or not ok:
            raise Unauthorized("Email or password is wrong.", code="invalid_credentials")
        if not user.is_active:
            raise Forbidden(
                "This account is disabled; ask an administrator.", code="account_disabled"
            )
        return user

    async def start_session(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID | None, *, method: str = tokens.PASSWORD
    ) -> LoginResult:
        """A login for a person who proved who they are otherwise (accepting an invitation with
        a password, or signing in through the tenant's identity provider: `method`)."""
        async with self.db.platform() as session:
            user = await users_repo.get(session, user_id)
        if user is None:
            raise Unauthorized("This account no longer exists.", code="invalid_token")
        return await self._start(
            user, str(tenant_id) if tenant_id else None, platform=False, method=method
        )

    async def _start(
        self,
        user: User,
        tenant_header: str | None,
        *,
        platform: bool,
        method: str = tokens.PASSWORD,
    ) -> LoginResult:
        if not user.is_active:
            raise Forbidden(
                "This account is disabled; ask an administrator.", code="account_disabled"
            )
        async with self.db.platform() as session:
            rows = await memberships_repo.for_user(session, user.id)
        tenants = [(t, Role(m.role)) for m, t in rows]
        if platform:
            tenant, role = self._platform_scope(user, tenant_header)
        else:
            tenant, role = await self._pick_tenant(user, tenants, tenant_header)
        if tenant is not None and tenant.status != "active":
            raise Forbidden(SUSPENDED, code="tenant_suspended")
        break_glass = False
        if tenant is not None and method != tokens.SSO:
            state = await self._tenant(tenant.id)
            if state is not None and state.sso_enforced:
                # Owners keep a password as the way in when the identity provider fails.
                if role is not Role.OWNER:
                    # Names the tenant: the password was right, and linking needs it.
                    raise Forbidden(
                        SSO_REQUIRED, code="sso_required", extra={"tenant": tenant.slug}
                    )
                break_glass = True
        token = tokens.issue(
            self.jwt_secret,
            user_id=user.id,
            tenant_id=tenant.id if tenant else None,
            ttl_seconds=self.jwt_ttl_seconds,
            version=user.token_version,
            method=method,
        )
        async with self.db.platform() as session:
            if break_glass:
                assert tenant is not None
                await audit.record(
                    session,
                    Principal(tenant_id=tenant.id, user_id=user.id),
                    "auth.break_glass",
                    tenant_id=tenant.id,
                    target_type="user",
                    target_id=user.id,
                    details={"reason": "password sign-in while the tenant enforces SSO"},
                )
            await audit.record(
                session,
                Principal(tenant_id=tenant.id if tenant else None, user_id=user.id),
                "auth.login",
                tenant_id=tenant.id if tenant else None,
                target_type="user",
                target_id=user.id,
                details={"method": method},
            )
        return LoginResult(token, self.jwt_ttl_seconds, user, tenant, role, tenants)

    @staticmethod
    def _platform_scope(user: User, tenant_header: str | None) -> tuple[None, None]:
        """A platform administrator's token for no tenant: the whole platform's pages."""
        if not user.is_platform_admin:
            raise Forbidden(
                "Only platform administrators can log in to the platform as a whole; "
                "log in without 'platform'.",
                code="not_platform_admin",
            )
        if tenant_header is not None:
            raise InvalidInput("Send either 'platform': true or X-Tenant-ID, not both.")
        return None, None

    async def _pick_tenant(
        self, user: User, tenants: list[tuple[Tenant, Role]], tenant_header: str | None
    ) -> tuple[Tenant | None, Role | None]:
        if tenant_header is None:
            # Several tenants and no choice: the oldest active membership; the response lists all.
            candidates = [(t, r) for t, r in tenants if t.status == "active"] or tenants
            if not candidates:
                return None, None
            return candidates[0]
        ref = tenant_header.strip().lower()
        for tenant, role in tenants:
            if ref in (str(tenant.id), tenant.slug):
                return tenant, role
        if user.is_platform_admin:
            named = await self.resolve_tenant_ref(tenant_header)
            if named is not None:
                async with self.db.platform() as session:
                    found = await tenants_repo.get(session, named.id)
                if found is not None:
                    return found, Role.OWNER
        raise Forbidden(
            "You are not a member of the tenant named by X-Tenant-ID.", code="not_a_member"
        )
