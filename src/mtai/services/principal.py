"""Who is calling: the tenant, the user or key, the role and the scopes, from the credential."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mtai.errors import Forbidden, InvalidInput


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class Scope(StrEnum):
    CHAT = "chat"
    RAG_READ = "rag:read"
    RAG_WRITE = "rag:write"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)
ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.OWNER: ALL_SCOPES,
    Role.ADMIN: ALL_SCOPES,
    Role.MEMBER: frozenset({Scope.CHAT, Scope.RAG_READ, Scope.RAG_WRITE}),
}


@dataclass(frozen=True)
class Principal:
    tenant_id: uuid.UUID | None
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    role: Role | None = None
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    is_platform_admin: bool = False
    key_limits: Mapping[str, Any] | None = None  # the API key's own limits, if any

    @property
    def actor(self) -> tuple[str, str]:
        """(actor_type, actor_id) for the audit trail."""
        if self.api_key_id is not None:
            return "api_key", str(self.api_key_id)
        return "user", str(self.user_id)

    def require_tenant(self) -> uuid.UUID:
        if self.tenant_id is None:
            raise InvalidInput(
                "No tenant selected: send X-Tenant-ID with the tenant's id or slug.",
                code="tenant_required",
            )
        return self.tenant_id

    def require_scope(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise Forbidden(
                f"This credential lacks the '{scope}' scope.", code="insufficient_scope"
            )

    def require_tenant_admin(self) -> uuid.UUID:
        tenant_id = self.require_tenant()
        self.require_scope(Scope.ADMIN)
        return tenant_id

    def require_platform_admin(self) -> None:
        if not self.is_platform_admin:
            raise Forbidden(
                "Only platform administrators may do this.", code="platform_admin_required"
            )


def operator(tenant_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None) -> Principal:
    """The platform acting with full rights: the operator's CLI and first-start bootstrap."""
    return Principal(
        tenant_id=tenant_id,
        user_id=user_id,
        role=Role.OWNER,
        scopes=ALL_SCOPES,
        is_platform_admin=True,
    )
