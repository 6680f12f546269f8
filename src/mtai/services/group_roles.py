"""A tenant's mapping from identity-provider group names to mtai roles.

Applied at every SSO sign-in (groups from the ID token) and whenever SCIM changes a group's
members. With a mapping, the provider is the authority: the highest role of the person's mapped
groups, or `member` when none matches. Without one, roles are managed in mtai.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.repositories import memberships as memberships_repo
from mtai.errors import InvalidInput
from mtai.logging import get_logger
from mtai.services import audit
from mtai.services.auth import member_cache_key
from mtai.services.auth_cache import AuthCache
from mtai.services.invalidation import invalidate
from mtai.services.principal import Role

log = get_logger(__name__)

RANK = {Role.MEMBER: 0, Role.ADMIN: 1, Role.OWNER: 2}
MAX_GROUPS = 200


def parse(raw: Mapping[str, object]) -> dict[str, Role]:
    """A mapping as an admin typed it: group name (as the provider sends it) -> role."""
    if len(raw) > MAX_GROUPS:
        raise InvalidInput(f"Map at most {MAX_GROUPS} groups.")
    mapping: dict[str, Role] = {}
    for group, role in raw.items():
        name = group.strip()
        if not name or len(name) > 255:
            raise InvalidInput("A group name is 1 to 255 characters.")
        try:
            mapping[name] = Role(str(role))
        except ValueError as exc:
            raise InvalidInput(
                f"Group {name!r} maps to {role!r}: use owner, admin or member."
            ) from exc
    return mapping


def role_for(mapping: Mapping[str, str], groups: Iterable[str]) -> Role | None:
    """The role the person's groups give; None when the tenant maps no groups."""
    if not mapping:
        return None
    by_name = {name.casefold(): Role(role) for name, role in mapping.items()}
    matched = [by_name[g.casefold()] for g in groups if g.casefold() in by_name]
    return max(matched, key=RANK.__getitem__, default=Role.MEMBER)


def groups_from_claim(value: object) -> list[str]:
    """A groups claim as providers send it: a list of names (or ids), or one string."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(g) for g in value[: MAX_GROUPS * 5] if isinstance(g, str | int)]
    return []


async def apply(
    session: AsyncSession,
    cache: AuthCache[object],
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    role: Role,
    *,
    action: str,
    details: Mapping[str, Any],
) -> None:
    """Give a member the role their groups map to; the tenant's last owner stays owner (a
    mapping that forgot the owners' group must not leave the tenant unmanaged)."""
    membership = await memberships_repo.get(session, tenant_id, user_id)
    if membership is None or membership.role == role:
        return
    previous = Role(membership.role)
    if (
        previous is Role.OWNER
        and await memberships_repo.count_role(session, tenant_id, Role.OWNER) <= 1
    ):
        log.warning("group_roles.last_owner_kept", tenant_id=str(tenant_id))
        return
    await memberships_repo.set_role(session, membership, role.value)
    await audit.record(
        session,
        None,
        action,
        tenant_id=tenant_id,
        target_type="user",
        target_id=user_id,
        details={**details, "from": previous, "to": role},
    )
    await invalidate(session, cache, member_cache_key(tenant_id, user_id))
