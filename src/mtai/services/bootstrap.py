"""First start: a platform admin and a demo tenant with one API key, made once."""

from __future__ import annotations

from dataclasses import dataclass

from mtai.db.engine import Database
from mtai.db.repositories import memberships as memberships_repo
from mtai.db.repositories import users as users_repo
from mtai.services import passwords
from mtai.services.api_keys import ApiKeyService
from mtai.services.principal import ALL_SCOPES, Role, operator
from mtai.services.tenants import TenantService


@dataclass(frozen=True)
class FirstStart:
    admin_email: str
    admin_password: str | None  # None: it was given (MTAI_BOOTSTRAP_ADMIN_PASSWORD), not made
    tenant_slug: str | None
    api_key: str | None


async def first_start(
    db: Database,
    tenants: TenantService,
    keys: ApiKeyService,
    *,
    admin_email: str,
    demo_tenant: str,
    admin_password: str | None = None,
) -> FirstStart | None:
    """None when a platform admin already exists (not the first start)."""
    async with db.platform() as session:
        await users_repo.lock_first_start(session)
        if await users_repo.count_platform_admins(session) > 0:
            return None
        password = admin_password or passwords.generate()
        admin = await users_repo.create(
            session,
            email=admin_email.strip().lower(),
            password_hash=await passwords.hash_password(password),
            display_name="Platform admin",
            is_platform_admin=True,
        )
    shown = None if admin_password else password
    if not demo_tenant:
        return FirstStart(admin.email, shown, None, None)
    tenant, _ = await tenants.create(operator(user_id=admin.id), slug=demo_tenant, name="Demo")
    async with db.tenant(tenant.id) as session:
        await memberships_repo.add(session, tenant_id=tenant.id, user_id=admin.id, role=Role.OWNER)
    _, plaintext = await keys.create(
        operator(tenant.id, admin.id), name="demo", scopes=sorted(ALL_SCOPES), expires_at=None
    )
    return FirstStart(admin.email, shown, tenant.slug, plaintext)
