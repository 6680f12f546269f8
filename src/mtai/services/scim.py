"""SCIM 2.0 provisioning: a tenant's identity provider keeps the tenant's directory here.

A SCIM user is a pre-authorisation in that directory, never an mtai identity or membership by
itself: SCIM creates no user, no membership, and never matches an existing identity by email.
The SSO sign-in binds a SCIM user to the identity that signed in through the tenant's provider
(`scim_users.user_id`). From then on the provider governs that member here:
- deactivating or deleting the SCIM user deprovisions the member at once (membership, API keys
  they made, sessions); reactivating restores the membership with the role their groups map to,
  else the role they had;
- changing a group's members sets the members' roles from the tenant's group-to-role mapping.
Every write is audited with actor "system" and `{"via": "scim"}`.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scim2_models import (
    Context,
    ForbiddenException,
    GroupMembership,
    InvalidValueException,
    ListResponse,
    Meta,
    NotFoundException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    Schema,
    UnauthorizedException,
    UniquenessException,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.engine import Database
from mtai.db.models import ScimGroup, ScimUser
from mtai.db.repositories import memberships as memberships_repo
from mtai.db.repositories import scim as scim_repo
from mtai.db.repositories import sso as sso_repo
from mtai.db.repositories import tenants as tenants_repo
from mtai.services import audit, group_roles
from mtai.services.auth import member_cache_key
from mtai.services.auth_cache import AuthCache
from mtai.services.group_roles import role_for
from mtai.services.invalidation import invalidate
from mtai.services.principal import Role
from mtai.services.scim_protocol import (
    GROUP_FILTERS,
    POLICY,
    PROVIDER,
    USER_FILTERS,
    Group,
    Member,
    UserResource,
    check_member_count,
    criterion,
    page,
    patch_request,
    response_parameters,
    returns,
    search_request,
    validated,
)
from mtai.services.users import UserService

VIA = {"via": "scim"}
# Column sizes (migration 0018): longer values are refused as invalidValue, not a database error.
MAX_USER_NAME = 320
MAX_EXTERNAL_ID = 255
MAX_DISPLAY_NAME = 255


@dataclass(frozen=True)
class Reply:
    """A SCIM response body, with the resource's ETag and location when it is one resource."""

    body: dict[str, Any]
    etag: str | None = None
    location: str | None = None


def _etag(version: int) -> str:
    return f'W/"{version}"'


def _check_version(version: int, if_match: str | None) -> None:
    """RFC 7644 §3.14: a write conditioned on If-Match applies only to that version."""
    if if_match is None:
        return
    tags = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if "*" not in tags and f'"{version}"' not in tags:
        raise PreconditionFailedException(
            detail=f"The resource is at version {_etag(version)}; read it again."
        )


def _parse_id(raw: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFoundException(detail=f"{kind} {raw} not found.") from None


def _bounded(name: str, value: str | None, limit: int) -> str | None:
    if value is not None and len(value) > limit:
        raise InvalidValueException(detail=f"{name} is longer than {limit} characters.")
    return value


def _display_name(value: str | None) -> str:
    if not value:
        raise InvalidValueException(detail="displayName is required.")
    return _bounded("displayName", value, MAX_DISPLAY_NAME) or value


def _stored(user: Resource[Any]) -> dict[str, Any]:
    """The user as kept in `scim_users.resource`: what the provider sent, less what the server
    owns (id, meta, groups) and the password, which mtai never takes from SCIM (people sign in
    through the provider)."""
    data = user.model_dump(scim_ctx=Context.DEFAULT)
    for key in ("id", "meta", "groups", "password"):
        data.pop(key, None)
    return data


class ScimService:
    def __init__(self, db: Database, cache: AuthCache[object], users: UserService) -> None:
        self.db = db
        self.cache = cache
        self.users = users

    async def authenticate(self, token: str | None) -> uuid.UUID:
        """The tenant whose SCIM token this is; the tenant comes from the token alone."""
        if not token:
            raise UnauthorizedException(detail="Send 'Authorization: Bearer <SCIM token>'.")
        digest = hashlib.sha256(token.encode()).digest()
        async with self.db.platform() as session:
            provider = await sso_repo.by_scim_token(session, digest)
            tenant = await tenants_repo.get(session, provider.tenant_id) if provider else None
        if (
            provider is None
            or provider.scim_token_hash is None
            or not hmac.compare_digest(provider.scim_token_hash, digest)
            or not provider.enabled
            or tenant is None
        ):
            raise UnauthorizedException(detail="The SCIM token is not valid.")
        if tenant.status != "active":
            raise ForbiddenException(detail="The tenant is suspended.")
        return provider.tenant_id

    # Discovery (RFC 7644 §4): the same for every tenant.

    @staticmethod
    def service_provider_config(base: str) -> Reply:
        assert PROVIDER.config is not None
        config = PROVIDER.config.model_copy(
            update={
                "meta": Meta(
                    resource_type="ServiceProviderConfig",
                    location=f"{base}/ServiceProviderConfig",
                )
            }
        )
        return Reply(config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))

    @staticmethod
    def _resource_type(resource_type: ResourceType, base: str) -> ResourceType:
        meta = Meta(
            resource_type="ResourceType", location=f"{base}/ResourceTypes/{resource_type.id}"
        )
        return resource_type.model_copy(update={"meta": meta})

    @staticmethod
    def _schema(schema: Schema, base: str) -> Schema:
        meta = Meta(resource_type="Schema", location=f"{base}/Schemas/{schema.id}")
        return schema.model_copy(update={"meta": meta})

    def resource_types(self, base: str) -> Reply:
        found = [self._resource_type(each, base) for each in PROVIDER.resource_types]
        return self._list(ListResponse[ResourceType], found, len(found), 0)

    def resource_type(self, base: str, name: str) -> Reply:
        for each in PROVIDER.resource_types:
            if each.id == name:
                resource = self._resource_type(each, base)
                return Reply(resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
        raise NotFoundException(detail=f"Resource type {name} not found.")

    def schemas(self, base: str) -> Reply:
        found = [self._schema(each, base) for each in PROVIDER.schemas]
        return self._list(ListResponse[Schema], found, len(found), 0)

    def schema(self, base: str, urn: str) -> Reply:
        for each in PROVIDER.schemas:
            if each.id is not None and each.id.casefold() == urn.casefold():
                resource = self._schema(each, base)
                return Reply(resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
        raise NotFoundException(detail=f"Schema {urn} not found.")

    @staticmethod
    def _list(
        kind: type[ListResponse[Any]],
        resources: Sequence[Resource[Any]],
        total: int,
        offset: int,
        wanted: ResponseParameters[Any] | None = None,
        context: Context = Context.RESOURCE_QUERY_RESPONSE,
    ) -> Reply:
        response = kind(
            total_results=total,
            start_index=offset + 1,
            items_per_page=len(resources),
            resources=resources,
        )
        return Reply(response.model_dump(scim_ctx=context, response_parameters=wanted))

    # Users

    async def list_users(
        self,
        tenant_id: uuid.UUID,
        base: str,
        query: Mapping[str, Any],
        context: Context = Context.RESOURCE_QUERY_REQUEST,
    ) -> Reply:
        search = search_request(UserResource, query, context)
        where = criterion(search.filter, USER_FILTERS)
        offset, limit = page(search)
        async with self.db.tenant(tenant_id) as session:
            rows, total = await scim_repo.list_users(
                session, tenant_id, where, offset=offset, limit=limit
            )
            groups = await scim_repo.groups_of(session, [row.id for row in rows])
        resources = [self._user(row, groups[row.id], base) for row in rows]
        answer = (
            Context.SEARCH_RESPONSE
            if context is Context.SEARCH_REQUEST
            else Context.RESOURCE_QUERY_RESPONSE
        )
        return self._list(ListResponse[UserResource], resources, total, offset, search, answer)

    async def get_user(
        self, tenant_id: uuid.UUID, base: str, raw_id: str, query: Mapping[str, Any]
    ) -> Reply:
        wanted = response_parameters(UserResource, query)
        async with self.db.tenant(tenant_id) as session:
            row = await self._user_row(session, tenant_id, raw_id)
            resource = await self._user_of(session, row, base)
        return self._one(resource, row.version, Context.RESOURCE_QUERY_RESPONSE, wanted)

    async def create_user(
        self, tenant_id: uuid.UUID, base: str, payload: Mapping[str, Any], query: Mapping[str, Any]
    ) -> Reply:
        user = validated(UserResource, payload, Context.RESOURCE_CREATION_REQUEST)
        wanted = response_parameters(UserResource, query)
        columns = self._user_columns(user)
        try:
            async with self.db.tenant(tenant_id) as session:
                await self._unique_user_name(session, tenant_id, columns["user_name"], None)
                row = await scim_repo.add_user(session, tenant_id=tenant_id, **columns)
                await audit.record(
                    session,
                    None,
                    "scim.user.create",
                    tenant_id=tenant_id,
                    target_type="scim_user",
                    target_id=row.id,
                    details={**VIA, "user_name": row.user_name},
                )
                resource = self._user(row, [], base)
        except IntegrityError as exc:  # a concurrent create with the same userName won
            raise UniquenessException(detail=f"userName {columns['user_name']} is taken.") from exc
        return self._one(resource, row.version, Context.RESOURCE_CREATION_RESPONSE, wanted)

    async def replace_user(
        self,
        tenant_id: uuid.UUID,
        base: str,
        raw_id: str,
        payload: Mapping[str, Any],
        query: Mapping[str, Any],
        if_match: str | None,
    ) -> Reply:
        replacement = validated(UserResource, payload, Context.RESOURCE_REPLACEMENT_REQUEST)
        wanted = response_parameters(UserResource, query)

        def replace(resource: UserResource) -> UserResource:
            replacement.replace(resource)
            return replacement

        return await self._write_user(
            tenant_id,
            base,
            raw_id,
            if_match,
            replace,
            "scim.user.replace",
            wanted,
            Context.RESOURCE_REPLACEMENT_RESPONSE,
        )

    async def patch_user(
        self,
        tenant_id: uuid.UUID,
        base: str,
        raw_id: str,
        payload: Mapping[str, Any],
        query: Mapping[str, Any],
        if_match: str | None,
    ) -> Reply:
        patch = patch_request(UserResource, payload)
        wanted = response_parameters(UserResource, query)

        def apply(resource: UserResource) -> UserResource:
            patch.patch(resource, scim_policy=POLICY)
            return resource

        return await self._write_user(
            tenant_id,
            base,
            raw_id,
            if_match,
            apply,
            "scim.user.patch",
            wanted,
            Context.RESOURCE_PATCH_RESPONSE,
        )

    async def delete_user(self, tenant_id: uuid.UUID, raw_id: str, if_match: str | None) -> None:
        async with self.db.tenant(tenant_id) as session:
            row = await self._user_row(session, tenant_id, raw_id)
            _check_version(row.version, if_match)
            scim_user_id, bound = row.id, row.user_id
        # Access ends before the directory entry goes: a failure in between leaves the entry for
        # the provider's retry, never a member the provider no longer vouches for.
        if bound is not None:
            await self.users.deprovision(None, tenant_id, bound, reason="scim_deleted")
        async with self.db.tenant(tenant_id) as session:
            gone = await scim_repo.get_user(session, tenant_id, scim_user_id)
            if gone is None:
                raise NotFoundException(detail=f"User {raw_id} not found.")
            await scim_repo.delete_user(session, gone)
            await audit.record(
                session,
                None,
                "scim.user.delete",
                tenant_id=tenant_id,
                target_type="scim_user",
                target_id=scim_user_id,
                details={
                    **VIA,
                    "user_name": row.user_name,
                    "user_id": str(bound) if bound else None,
                },
            )

    async def _write_user(
        self,
        tenant_id: uuid.UUID,
        base: str,
        raw_id: str,
        if_match: str | None,
        change: Callable[[UserResource], UserResource],
        action: str,
        wanted: ResponseParameters[Any],
        context: Context,
    ) -> Reply:
        try:
            async with self.db.tenant(tenant_id) as session:
                row = await self._user_row(session, tenant_id, raw_id)
                _check_version(row.version, if_match)
                before = await self._user_of(session, row, base)
                after = change(before.model_copy(deep=True))
                if after.model_dump() != before.model_dump():
                    columns = self._user_columns(after)
                    await self._unique_user_name(session, tenant_id, columns["user_name"], row.id)
                    await audit.record(
                        session,
                        None,
                        action,
                        tenant_id=tenant_id,
                        target_type="scim_user",
                        target_id=row.id,
                        details={**VIA, "user_name": columns["user_name"]},
                    )
                    columns |= await self._follow_activity(
                        session, tenant_id, row, columns["active"]
                    )
                    row = await scim_repo.update_user(session, row, **columns)
                resource = await self._user_of(session, row, base)
                bound, active = row.user_id, row.active
        except IntegrityError as exc:
            raise UniquenessException(detail="userName is taken.") from exc
        if bound is not None and not active:
            # Idempotent: a provider's retry after a failure here finishes the job.
            await self.users.deprovision(None, tenant_id, bound, reason="scim_deactivated")
        return self._one(resource, row.version, context, wanted)

    async def _follow_activity(
        self, session: AsyncSession, tenant_id: uuid.UUID, row: ScimUser, active: bool
    ) -> dict[str, Any]:
        """What a change of `active` does besides: deactivation keeps the member's role for a
        reactivation (the caller then deprovisions); reactivation restores the membership.
        The columns to change with it."""
        if row.active == active:
            return {}
        if not active:
            await audit.record(
                session,
                None,
                "scim.user.deactivate",
                tenant_id=tenant_id,
                target_type="scim_user",
                target_id=row.id,
                details={**VIA, "user_id": str(row.user_id) if row.user_id else None},
            )
        if row.user_id is None:
            return {}
        membership = await memberships_repo.get(session, tenant_id, row.user_id)
        if not active:
            return {"suspended_role": membership.role} if membership is not None else {}
        if membership is None:
            mapped = role_for(
                await self._group_roles(session, tenant_id),
                await scim_repo.group_names(session, row.id),
            )
            role = mapped or Role(row.suspended_role or Role.MEMBER)
            await memberships_repo.add(session, tenant_id=tenant_id, user_id=row.user_id, role=role)
            await audit.record(
                session,
                None,
                "scim.user.reactivate",
                tenant_id=tenant_id,
                target_type="user",
                target_id=row.user_id,
                details={**VIA, "role": role, "scim_user_id": str(row.id)},
            )
            await invalidate(session, self.cache, member_cache_key(tenant_id, row.user_id))
        return {"suspended_role": None}

    @staticmethod
    def _user_columns(user: UserResource) -> dict[str, Any]:
        """The indexed columns, taken from the resource they mirror. A user without `active`
        is active (the provider did not say otherwise)."""
        if not user.user_name:
            raise InvalidValueException(detail="userName is required.")
        return {
            "user_name": _bounded("userName", user.user_name, MAX_USER_NAME),
            "external_id": _bounded("externalId", user.external_id, MAX_EXTERNAL_ID),
            "active": user.active is not False,
            "resource": _stored(user),
        }

    @staticmethod
    async def _unique_user_name(
        session: AsyncSession, tenant_id: uuid.UUID, user_name: str, other_than: uuid.UUID | None
    ) -> None:
        if await scim_repo.user_name_taken(session, tenant_id, user_name, other_than=other_than):
            raise UniquenessException(detail=f"userName {user_name} is taken.")

    @staticmethod
    async def _user_row(session: AsyncSession, tenant_id: uuid.UUID, raw_id: str) -> ScimUser:
        row = await scim_repo.get_user(session, tenant_id, _parse_id(raw_id, "User"))
        if row is None:
            raise NotFoundException(detail=f"User {raw_id} not found.")
        return row

    async def _user_of(self, session: AsyncSession, row: ScimUser, base: str) -> UserResource:
        groups = await scim_repo.groups_of(session, [row.id])
        return self._user(row, groups[row.id], base)

    @staticmethod
    def _user(row: ScimUser, groups: Iterable[ScimGroup], base: str) -> UserResource:
        resource = UserResource.model_validate(
            {**row.resource, "id": str(row.id), "userName": row.user_name}
        )
        resource.groups = [
            GroupMembership(
                value=str(group.id),
                ref=f"{base}/Groups/{group.id}",
                display=group.display_name,
                type="direct",
            )
            for group in groups
        ] or None
        resource.meta = Meta(
            resource_type="User",
            created=row.created_at,
            last_modified=row.updated_at,
            location=f"{base}/Users/{row.id}",
            version=_etag(row.version),
        )
        return resource

    @staticmethod
    def _one(
        resource: Resource[Any], version: int, context: Context, wanted: ResponseParameters[Any]
    ) -> Reply:
        body = resource.model_dump(scim_ctx=context, response_parameters=wanted)
        location = resource.meta.location if resource.meta is not None else None
        return Reply(body, _etag(version), location)

    # Groups

    async def list_groups(
        self,
        tenant_id: uuid.UUID,
        base: str,
        query: Mapping[str, Any],
        context: Context = Context.RESOURCE_QUERY_REQUEST,
    ) -> Reply:
        search = search_request(Group, query, context)
        where = criterion(search.filter, GROUP_FILTERS)
        offset, limit = page(search)
        async with self.db.tenant(tenant_id) as session:
            rows, total = await scim_repo.list_groups(
                session, tenant_id, where, offset=offset, limit=limit
            )
            # Entra lists groups without their members: no need to read them then.
            members = (
                await scim_repo.members(session, [row.id for row in rows])
                if returns(search, "members")
                else {}
            )
        resources = [self._group(row, members.get(row.id, []), base) for row in rows]
        answer = (
            Context.SEARCH_RESPONSE
            if context is Context.SEARCH_REQUEST
            else Context.RESOURCE_QUERY_RESPONSE
        )
        return self._list(ListResponse[Group], resources, total, offset, search, answer)

    async def get_group(
        self, tenant_id: uuid.UUID, base: str, raw_id: str, query: Mapping[str, Any]
    ) -> Reply:
        wanted = response_parameters(Group, query)
        async with self.db.tenant(tenant_id) as session:
            row = await self._group_row(session, tenant_id, raw_id)
            members = await scim_repo.members(session, [row.id])
        resource = self._group(row, members[row.id], base)
        return self._one(resource, row.version, Context.RESOURCE_QUERY_RESPONSE, wanted)

    async def create_group(
        self, tenant_id: uuid.UUID, base: str, payload: Mapping[str, Any], query: Mapping[str, Any]
    ) -> Reply:
        check_member_count(payload)
        group = validated(Group, payload, Context.RESOURCE_CREATION_REQUEST)
        wanted = response_parameters(Group, query)
        name = _display_name(group.display_name)
        try:
            async with self.db.tenant(tenant_id) as session:
                await self._unique_group_name(session, tenant_id, name, None)
                member_ids = self._member_ids(group.members)
                await self._check_users(session, tenant_id, member_ids)
                row = await scim_repo.add_group(
                    session,
                    tenant_id=tenant_id,
                    display_name=name,
                    external_id=_bounded("externalId", group.external_id, MAX_EXTERNAL_ID),
                )
                await scim_repo.add_members(session, tenant_id, row.id, member_ids)
                await audit.record(
                    session,
                    None,
                    "scim.group.create",
                    tenant_id=tenant_id,
                    target_type="scim_group",
                    target_id=row.id,
                    details={**VIA, "display_name": name, "members": len(member_ids)},
                )
                await self._sync_roles(session, tenant_id, member_ids)
        except IntegrityError as exc:
            raise UniquenessException(detail=f"displayName {name} is taken.") from exc
        resource = self._group(row, sorted(member_ids), base)
        return self._one(resource, row.version, Context.RESOURCE_CREATION_RESPONSE, wanted)

    async def replace_group(
        self,
        tenant_id: uuid.UUID,
        base: str,
        raw_id: str,
        payload: Mapping[str, Any],
        query: Mapping[str, Any],
        if_match: str | None,
    ) -> Reply:
        check_member_count(payload)
        replacement = validated(Group, payload, Context.RESOURCE_REPLACEMENT_REQUEST)
        wanted = response_parameters(Group, query)

        def replace(resource: Group) -> Group:
            replacement.replace(resource)
            return replacement

        return await self._write_group(
            tenant_id,
            base,
            raw_id,
            if_match,
            replace,
            "scim.group.replace",
            wanted,
            Context.RESOURCE_REPLACEMENT_RESPONSE,
        )

    async def patch_group(
        self,
        tenant_id: uuid.UUID,
        base: str,
        raw_id: str,
        payload: Mapping[str, Any],
        query: Mapping[str, Any],
        if_match: str | None,
    ) -> Reply:
        check_member_count(payload)
        patch = patch_request(Group, payload)
        wanted = response_parameters(Group, query)

        def apply(resource: Group) -> Group:
            patch.patch(resource, scim_policy=POLICY)
            return resource

        return await self._write_group(
            tenant_id,
            base,
            raw_id,
            if_match,
            apply,
            "scim.group.patch",
            wanted,
            Context.RESOURCE_PATCH_RESPONSE,
        )

    async def delete_group(self, tenant_id: uuid.UUID, raw_id: str, if_match: str | None) -> None:
        async with self.db.tenant(tenant_id) as session:
            row = await self._group_row(session, tenant_id, raw_id)
            _check_version(row.version, if_match)
            member_ids = (await scim_repo.members(session, [row.id]))[row.id]
            await scim_repo.delete_group(session, row)
            await audit.record(
                session,
                None,
                "scim.group.delete",
                tenant_id=tenant_id,
                target_type="scim_group",
                target_id=row.id,
                details={**VIA, "display_name": row.display_name},
            )
            await self._sync_roles(session, tenant_id, member_ids)

    async def _write_group(
        self,
        tenant_id: uuid.UUID,
        base: str,
        raw_id: str,
        if_match: str | None,
        change: Callable[[Group], Group],
        action: str,
        wanted: ResponseParameters[Any],
        context: Context,
    ) -> Reply:
        try:
            async with self.db.tenant(tenant_id) as session:
                row = await self._group_row(session, tenant_id, raw_id)
                _check_version(row.version, if_match)
                old_ids = (await scim_repo.members(session, [row.id]))[row.id]
                before = self._group(row, old_ids, base)
                after: Group = change(before.model_copy(deep=True))
                new_ids = self._member_ids(after.members)
                name = _display_name(after.display_name)
                external_id = _bounded("externalId", after.external_id, MAX_EXTERNAL_ID)
                added, removed = set(new_ids) - set(old_ids), set(old_ids) - set(new_ids)
                await self._check_users(session, tenant_id, added)
                renamed = name != row.display_name
                if added or removed or renamed or external_id != row.external_id:
                    if renamed:
                        await self._unique_group_name(session, tenant_id, name, row.id)
                    await scim_repo.remove_members(session, row.id, removed)
                    await scim_repo.add_members(session, tenant_id, row.id, added)
                    row = await scim_repo.update_group(
                        session, row, display_name=name, external_id=external_id
                    )
                    await audit.record(
                        session,
                        None,
                        action,
                        tenant_id=tenant_id,
                        target_type="scim_group",
                        target_id=row.id,
                        details={
                            **VIA,
                            "display_name": name,
                            "added": len(added),
                            "removed": len(removed),
                        },
                    )
                    # A rename changes what the mapping says of every member.
                    affected = set(old_ids) | set(new_ids) if renamed else added | removed
                    await self._sync_roles(session, tenant_id, affected)
        except IntegrityError as exc:
            raise UniquenessException(detail="displayName is taken.") from exc
        return self._one(self._group(row, new_ids, base), row.version, context, wanted)

    @staticmethod
    def _member_ids(members: Iterable[Member] | None) -> list[uuid.UUID]:
        """The SCIM users a group's `members` names (users only: groups do not nest here)."""
        ids: set[uuid.UUID] = set()
        for member in members or []:
            if member.type not in (None, "User"):
                raise InvalidValueException(detail="Groups hold users only; groups do not nest.")
            if not member.value:
                raise InvalidValueException(detail="Each member needs its user's id as value.")
            try:
                ids.add(uuid.UUID(member.value))
            except ValueError:
                raise InvalidValueException(
                    detail=f"Member {member.value} is not a user of this directory."
                ) from None
        return sorted(ids)

    @staticmethod
    async def _check_users(
        session: AsyncSession, tenant_id: uuid.UUID, ids: Collection[uuid.UUID]
    ) -> None:
        """New members must be users of this tenant's directory (another tenant's id is as
        unknown as a made-up one)."""
        missing = set(ids) - await scim_repo.existing_user_ids(session, tenant_id, ids)
        if missing:
            raise InvalidValueException(
                detail=f"Member {min(missing)} is not a user of this directory."
            )

    @staticmethod
    async def _unique_group_name(
        session: AsyncSession, tenant_id: uuid.UUID, name: str, other_than: uuid.UUID | None
    ) -> None:
        if await scim_repo.group_name_taken(session, tenant_id, name, other_than=other_than):
            raise UniquenessException(detail=f"displayName {name} is taken.")

    @staticmethod
    async def _group_row(session: AsyncSession, tenant_id: uuid.UUID, raw_id: str) -> ScimGroup:
        row = await scim_repo.get_group(session, tenant_id, _parse_id(raw_id, "Group"))
        if row is None:
            raise NotFoundException(detail=f"Group {raw_id} not found.")
        return row

    @staticmethod
    def _group(row: ScimGroup, member_ids: Iterable[uuid.UUID], base: str) -> Group:
        return Group(
            id=str(row.id),
            external_id=row.external_id,
            display_name=row.display_name,
            members=[
                Member(value=str(user_id), ref=f"{base}/Users/{user_id}", type="User")
                for user_id in member_ids
            ]
            or None,
            meta=Meta(
                resource_type="Group",
                created=row.created_at,
                last_modified=row.updated_at,
                location=f"{base}/Groups/{row.id}",
                version=_etag(row.version),
            ),
        )

    # Roles from groups

    @staticmethod
    async def _group_roles(session: AsyncSession, tenant_id: uuid.UUID) -> dict[str, Any]:
        provider = await sso_repo.get(session, tenant_id)
        return dict(provider.group_roles) if provider is not None else {}

    async def _sync_roles(
        self, session: AsyncSession, tenant_id: uuid.UUID, scim_user_ids: Iterable[uuid.UUID]
    ) -> None:
        """Set each affected bound, active member's role to what their groups map to. Without
        a mapping the tenant manages roles in mtai, and nothing changes."""
        mapping = await self._group_roles(session, tenant_id)
        ids = list(scim_user_ids)
        if not mapping or not ids:
            return
        bound = {
            row.id: row.user_id
            for row in await scim_repo.users_by_ids(session, tenant_id, ids)
            if row.user_id is not None and row.active
        }
        groups = await scim_repo.groups_of(session, list(bound))
        for scim_user_id, user_id in bound.items():
            role = role_for(mapping, [group.display_name for group in groups[scim_user_id]])
            if role is not None:
                await group_roles.apply(
                    session,
                    self.cache,
                    tenant_id,
                    user_id,
                    role,
                    action="scim.role",
                    details={**VIA, "scim_user_id": str(scim_user_id)},
                )
