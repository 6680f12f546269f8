"""Users and their roles in a tenant, managed by that tenant's admins."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.engine import Database
from mtai.db.models import Membership, User
from mtai.db.repositories import memberships as memberships_repo
from mtai.db.repositories import users as users_repo
from mtai.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from mtai.services import audit, passwords
from mtai.services.auth import member_cache_key, user_cache_key
from mtai.services.auth_cache import AuthCache
from mtai.services.invalidation import invalidate
from mtai.services.principal import Principal, Role

Member = tuple[Membership, User]


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise InvalidInput("Email address is not valid.")
    return email


async def ensure_user(
    session: AsyncSession, email: str, password: str | None, *, display_name: str = ""
) -> tuple[User, str | None]:
    """The user with this email, created if new; plus the generated password, if one was made.

    Users are global identities: an existing user keeps their password, and the one given
    here is ignored.
    """
    email = normalise_email(email)
    user = await users_repo.get_by_email(session, email)
    if user is not None:
        return user, None
    generated = None
    if password is None:
        password = generated = passwords.generate()
    passwords.check_strength(password)
    user = await users_repo.create(
        session,
        email=email,
        password_hash=await passwords.hash_password(password),
        display_name=display_name,
    )
    return user, generated


async def add_member(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    email: str,
    password: str | None,
    role: Role,
    *,
    display_name: str,
) -> tuple[Member, str | None]:
    """Give `email` a role in the tenant, creating the user if new (see ensure_user)."""
    user, generated = await ensure_user(session, email, password, display_name=display_name)
    if await memberships_repo.get(session, tenant_id, user.id) is not None:
        raise Conflict(f"{user.email} is already a member of this tenant.")
    membership = await memberships_repo.add(
        session, tenant_id=tenant_id, user_id=user.id, role=role
    )
    return (membership, user), generated


def _check_may_manage(actor: Principal, current: Role | None, wanted: Role | None) -> None:
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
            await audit.record(
                session,
                actor,
                "user.password_change",
                tenant_id=actor.tenant_id,
                target_type="user",
                target_id=user.id,
            )

    async def create_account(
        self,
        actor: Principal,
        *,
        email: str,
        password: str | None,
        platform_admin: bool,
        role: Role = Role.MEMBER,
    ) -> tuple[User, str | None]:
        """Operator path: a platform admin, a tenant member, or both (the CLI)."""
        actor.require_platform_admin()
        if actor.tenant_id is not None:
            (_, user), generated = await self.create(
                actor, email=email, password=password, role=role, display_name=""
            )
        else:
            async with self.db.platform() as session:
                user, generated = await ensure_user(session, email, password)
        if platform_admin and not user.is_platform_admin:
            async with self.db.platform() as session:
                found = await users_repo.get(session, user.id)
                assert found is not None
                user = await users_repo.update(session, found, is_platform_admin=True)
                await audit.record(
                    session,
                    actor,
                    "user.platform_admin",
                    tenant_id=None,
                    target_type="user",
                    target_id=user.id,
                )
                await invalidate(session, self.cache, user_cache_key(user.id))
        return user, generated

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

    async def create(
        self,
        actor: Principal,
        *,
        email: str,
        password: str | None,
        role: Role,
        display_name: str,
    ) -> tuple[Member, str | None]:
        tenant_id = actor.require_tenant_admin()
        _check_may_manage(actor, None, role)
        async with self.db.tenant(tenant_id) as session:
            member, generated = await add_member(
                session, tenant_id, email, password, role, display_name=display_name
            )
            await audit.record(
                session,
                actor,
                "user.add",
                tenant_id=tenant_id,
                target_type="user",
                target_id=member[1].id,
                details={"email": member[1].email, "role": role},
            )
            await invalidate(session, self.cache, member_cache_key(tenant_id, member[1].id))
        return member, generated

    async def set_role(self, actor: Principal, user_id: uuid.UUID, role: Role) -> Member:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            found = await memberships_repo.get_with_user(session, tenant_id, user_id)
            if found is None:
                raise NotFound("User not found in this tenant.")
            membership, user = found
            current = Role(membership.role)
            _check_may_manage(actor, current, role)
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

    async def remove(self, actor: Principal, user_id: uuid.UUID) -> None:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            membership = await memberships_repo.get(session, tenant_id, user_id)
            if membership is None:
                raise NotFound("User not found in this tenant.")
            current = Role(membership.role)
            _check_may_manage(actor, current, None)
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
            )
            await invalidate(session, self.cache, member_cache_key(tenant_id, user_id))

    @staticmethod
    async def _keep_an_owner(session: AsyncSession, tenant_id: uuid.UUID) -> None:
        if await memberships_repo.count_role(session, tenant_id, Role.OWNER) <= 1:
            raise Conflict("A tenant must keep at least one owner; make someone else owner first.")
