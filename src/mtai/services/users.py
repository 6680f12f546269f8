"""Users and their roles in a tenant, managed by that tenant's admins; sessions and disabling.

Memberships are made only by accepting an invitation (services/invitations.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.engine import Database
from mtai.db.models import Membership, User
from mtai.db.repositories import api_keys as keys_repo
from mtai.db.repositories import invitations as invitations_repo
from mtai.db.repositories import memberships as memberships_repo
from mtai.db.repositories import users as users_repo
from mtai.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from mtai.services import audit, passwords
from mtai.services.auth import key_cache_key, member_cache_key, user_cache_key
from mtai.services.auth_cache import AuthCache
from mtai.services.invalidation import invalidate
from mtai.services.principal import Principal, Role

Member = tuple[Membership, User]


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise InvalidInput("Email address is not valid.")
    return email


def check_may_manage(actor: Principal, current: Role | None, wanted: Role | None) -> None:
    """Only owners touch owners; admins manage admins and members."""
    if Role.OWNER in (current, wanted) and actor.role is not Role.OWNER:
        raise Forbidden(
            "Only an owner can grant, change or remove the owner role.", code="owner_required"
        )


class UserService:
    def __init__(self, db: Database, cache: AuthCache[object]) -> None:
        self.db = db
        self.cache = cache

    async def own_account(self, user_id: uuid.UUID) -> User:
        async with self.db.platform() as session:
            user = await users_repo.get(session, user_id)
        if user is None:
            raise Unauthorized("This account no longer exists.")
        return user

    async def change_password(
        self, actor: Principal, current_password: str, new_password: str
    ) -> None:
        """A logged-in user replaces their own password (API keys cannot)."""
        if actor.user_id is None or actor.api_key_id is not None:
            raise Forbidden(
                "Change a password while logged in with it (POST /api/v1/auth/login), not with "
                "an API key.",
                code="password_needs_login",
            )
        user = await self.own_account(actor.user_id)
        if not await passwords.verify_password(user.password_hash, current_password):
            raise Forbidden("The current password is wrong.", code="wrong_password")
        passwords.check_strength(new_password)
        if new_password == current_password:
            raise InvalidInput("The new password is the current one: choose another.")
        async with self.db.platform() as session:
            found = await users_repo.get(session, user.id)
            assert found is not None
            await users_repo.update(
                session, found, password_hash=await passwords.hash_password(new_password)
            )
            # Every session, this one included, ends: a thief's copy must not outlive the change.
            await users_repo.bump_token_version(session, found)
            await audit.record(
                session,
                actor,
                "user.password_change",
                tenant_id=actor.tenant_id,
                target_type="user",
                target_id=user.id,
            )
            await invalidate(session, self.cache, user_cache_key(user.id))

    async def sign_out_everywhere(self, actor: Principal) -> None:
        """End every session of the logged-in caller (API keys are not sessions)."""
        if actor.user_id is None or actor.api_key_id is not None:
            raise Forbidden(
                "Sign out with the login you want to end (Bearer token), not with an API key; "
                "revoke a key with DELETE /api/v1/keys/{id}.",
                code="password_needs_login",
            )
        async with self.db.platform() as session:
            await self._end_sessions(session, actor, actor.user_id, actor.tenant_id)

    async def sign_out(self, actor: Principal, user_id: uuid.UUID) -> None:
        """A tenant admin ends every session of one of the tenant's members.

        The identity may belong to other tenants too; its sessions there end as well. That
        grants nothing and takes nothing away but the sessions: the person logs in again.
        """
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            membership = await memberships_repo.get(session, tenant_id, user_id)
            if membership is None:
                raise NotFound("User not found in this tenant.")
            check_may_manage(actor, Role(membership.role), None)
        async with self.db.platform() as session:
            await self._end_sessions(session, actor, user_id, tenant_id)

    async def set_active(self, actor: Principal | None, email: str, *, active: bool) -> User:
        """Platform administrators disable or enable an identity everywhere.

        A tenant admin's equivalent is removing the membership: only the platform may lock a
        person out of every tenant. Disabling ends every session; API keys belong to tenants and
        are not touched.
        """
        if actor is not None:
            actor.require_platform_admin()
        async with self.db.platform() as session:
            user = await users_repo.get_by_email(session, normalise_email(email))
            if user is None:
                raise NotFound("No account has this email address.")
            if actor is not None and actor.user_id == user.id and not active:
                raise Conflict("You cannot disable your own account; ask another administrator.")
            await users_repo.update(session, user, is_active=active)
            if not active:
                await users_repo.bump_token_version(session, user)
            await audit.record(
                session,
                actor,
                "user.enable" if active else "user.disable",
                tenant_id=None,
                target_type="user",
                target_id=user.id,
                details={"email": user.email},
            )
            await invalidate(session, self.cache, user_cache_key(user.id))
        return user

    async def grant_platform_admin(self, actor: Principal | None, email: str) -> User | None:
        """Make an existing identity a platform administrator; None if there is no such identity
        (the operator then issues a platform activation for the person to accept)."""
        if actor is not None:
            actor.require_platform_admin()
        async with self.db.platform() as session:
            user = await users_repo.get_by_email(session, normalise_email(email))
            if user is None:
                return None
            if not user.is_platform_admin:
                await users_repo.update(session, user, is_platform_admin=True)
                await audit.record(
                    session,
                    actor,
                    "user.platform_admin",
                    tenant_id=None,
                    target_type="user",
                    target_id=user.id,
                )
                await invalidate(session, self.cache, user_cache_key(user.id))
        return user

    async def _end_sessions(
        self,
        session: AsyncSession,
        actor: Principal | None,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID | None,
    ) -> None:
        user = await users_repo.get(session, user_id)
        if user is None:
            raise NotFound("User not found.")
        await users_repo.bump_token_version(session, user)
        await audit.record(
            session,
            actor,
            "user.sign_out",
            tenant_id=tenant_id,
            target_type="user",
            target_id=user_id,
        )
        await invalidate(session, self.cache, user_cache_key(user_id))

    async def list(self, actor: Principal, *, limit: int, offset: int) -> tuple[list[Member], int]:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            return await memberships_repo.list_page(session, tenant_id, limit=limit, offset=offset)

    async def get(self, actor: Principal, user_id: uuid.UUID) -> Member:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            found = await memberships_repo.get_with_user(session, tenant_id, user_id)
        if found is None:
            raise NotFound("User not found in this tenant.")
        return found

    async def set_role(self, actor: Principal, user_id: uuid.UUID, role: Role) -> Member:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            found = await memberships_repo.get_with_user(session, tenant_id, user_id)
            if found is None:
                raise NotFound("User not found in this tenant.")
            membership, user = found
            current = Role(membership.role)
            check_may_manage(actor, current, role)
            if current is Role.OWNER and role is not Role.OWNER:
                await self._keep_an_owner(session, tenant_id)
            await memberships_repo.set_role(session, membership, role)
            await audit.record(
                session,
                actor,
                "user.role",
                tenant_id=tenant_id,
                target_type="user",
                target_id=user_id,
                details={"from": current, "to": role},
            )
            await invalidate(session, self.cache, member_cache_key(tenant_id, user_id))
        return membership, user

    async def remove(self, actor: Principal, user_id: uuid.UUID, *, keep_keys: bool) -> None:
        """Remove a member; revoke the API keys they made here unless `keep_keys` says keep them.

        When it was their last membership every session ends too (deprovisioning).
        """
        tenant_id = actor.require_tenant_admin()
        revoked: list[str] = []
        async with self.db.tenant(tenant_id) as session:
            membership = await memberships_repo.get(session, tenant_id, user_id)
            if membership is None:
                raise NotFound("User not found in this tenant.")
            current = Role(membership.role)
            check_may_manage(actor, current, None)
            if current is Role.OWNER:
                await self._keep_an_owner(session, tenant_id)
            await memberships_repo.remove(session, tenant_id, user_id)
            await audit.record(
                session,
                actor,
                "user.remove",
                tenant_id=tenant_id,
                target_type="user",
                target_id=user_id,
                details={"keep_keys": keep_keys},
            )
            if not keep_keys:
                revoked = await revoke_access(session, actor, tenant_id, user_id, "creator_removed")
            await invalidate(session, self.cache, member_cache_key(tenant_id, user_id), *revoked)
        async with self.db.platform() as session:
            if not await memberships_repo.for_user(session, user_id):
                user = await users_repo.get(session, user_id)
                if user is not None and not user.is_platform_admin:
                    await users_repo.bump_token_version(session, user)
                    await invalidate(session, self.cache, user_cache_key(user_id))

    async def deprovision(
        self, actor: Principal | None, tenant_id: uuid.UUID, user_id: uuid.UUID, *, reason: str
    ) -> Role | None:
        """The tenant's identity provider removed the person: the membership, the API keys they
        made here, the invitations they issued and every session end at once. No owner check:
        the provider is the authority (a platform administrator can restore an owner).
        Returns the role they had, None if they were not a member."""
        async with self.db.tenant(tenant_id) as session:
            membership = await memberships_repo.get(session, tenant_id, user_id)
            if membership is None:
                return None
            role = Role(membership.role)
            await memberships_repo.remove(session, tenant_id, user_id)
            await audit.record(
                session,
                actor,
                "user.deprovision",
                tenant_id=tenant_id,
                target_type="user",
                target_id=user_id,
                details={"reason": reason, "role": role},
            )
            revoked = await revoke_access(session, actor, tenant_id, user_id, reason)
            await invalidate(session, self.cache, member_cache_key(tenant_id, user_id), *revoked)
        async with self.db.platform() as session:
            user = await users_repo.get(session, user_id)
            if user is not None:
                await users_repo.bump_token_version(session, user)
                await invalidate(session, self.cache, user_cache_key(user_id))
        return role

    @staticmethod
    async def _keep_an_owner(session: AsyncSession, tenant_id: uuid.UUID) -> None:
        if await memberships_repo.count_role(session, tenant_id, Role.OWNER) <= 1:
            raise Conflict("A tenant must keep at least one owner; make someone else owner first.")


async def revoke_access(
    session: AsyncSession,
    actor: Principal | None,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    reason: str,
) -> list[str]:
    """Revoke the API keys a departing member made in the tenant and the invitations they
    issued (a way back in for the token's holder); the cache keys to invalidate."""
    now = datetime.now(UTC)
    revoked: list[str] = []
    for key in await keys_repo.active_created_by(session, tenant_id, user_id):
        await keys_repo.set_revoked(session, key, now)
        await audit.record(
            session,
            actor,
            "api_key.revoke",
            tenant_id=tenant_id,
            target_type="api_key",
            target_id=key.id,
            details={"reason": reason, "creator": str(user_id)},
        )
        revoked.append(key_cache_key(key.prefix))
    for invitation in await invitations_repo.pending_invited_by(session, tenant_id, user_id, now):
        await invitations_repo.update(session, invitation, revoked_at=now)
        await audit.record(
            session,
            actor,
            "invitation.revoke",
            tenant_id=tenant_id,
            target_type="invitation",
            target_id=invitation.id,
            details={"email": invitation.email, "reason": reason},
        )
    return revoked
