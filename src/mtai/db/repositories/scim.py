"""The tenant's SCIM directory: users and groups as its identity provider pushes them.

Filters arrive here as `Criterion` trees over a fixed set of attribute names (the service
translates SCIM filters into them); every value is a bound parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    SQLColumnExpression,
    String,
    and_,
    case,
    cast,
    column,
    delete,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from mtai.db.models import ScimGroup, ScimGroupMember, ScimUser

Operator = Literal["eq", "co", "sw", "ew", "pr"]
# What users and groups are filtered on (SCIM attribute names).
USER_ATTRIBUTES = frozenset(
    {"id", "userName", "externalId", "active", "displayName", "emails.value"}
)
GROUP_ATTRIBUTES = frozenset({"id", "displayName", "externalId", "members.value"})


@dataclass(frozen=True)
class Match:
    """`attribute op value`; `pr` (present) takes no value. Strings compare case-insensitively
    except ids, which SCIM defines as case-exact."""

    attribute: str
    op: Operator
    value: str | bool | None = None


@dataclass(frozen=True)
class AllOf:
    terms: tuple[Criterion, ...]


@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Criterion, ...]


@dataclass(frozen=True)
class Negation:
    term: Criterion


Criterion = Match | AllOf | AnyOf | Negation

# Ids per statement: a large group's members would otherwise exceed PostgreSQL's 32767
# parameters per query.
BATCH = 1000


def _batches(ids: Collection[uuid.UUID]) -> list[list[uuid.UUID]]:
    ordered = list(ids)
    return [ordered[i : i + BATCH] for i in range(0, len(ordered), BATCH)]


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text_match(
    expr: SQLColumnExpression[Any], op: Operator, value: object, *, case_exact: bool
) -> ColumnElement[bool]:
    if op == "pr":
        return and_(expr.is_not(None), expr != "")
    if not isinstance(value, str):
        return false()
    if op != "eq":
        value = {"co": "%{}%", "sw": "{}%", "ew": "%{}"}[op].format(_escape_like(value))
    operand: SQLColumnExpression[Any] = literal(value, String)
    if not case_exact:
        # Both sides folded by PostgreSQL, as the unique indexes on lower(...) are.
        expr, operand = func.lower(expr), func.lower(operand)
    return expr == operand if op == "eq" else expr.like(operand, escape="\\")


def _email_match(op: Operator, value: object) -> ColumnElement[bool]:
    """Any of the user's emails (a JSON array in the stored resource) matches."""
    emails = ScimUser.resource["emails"]
    elements = func.jsonb_array_elements(
        case((func.jsonb_typeof(emails) == "array", emails), else_=cast(literal("[]"), JSONB))
    ).table_valued(column("value", JSONB))
    email = elements.c.value["value"].astext
    return exists(
        select(literal(1))
        .select_from(elements)
        .where(_text_match(email, op, value, case_exact=False))
    )


def _member_match(op: Operator, value: object) -> ColumnElement[bool]:
    member = cast(ScimGroupMember.scim_user_id, String)
    return exists(
        select(literal(1)).where(
            ScimGroupMember.group_id == ScimGroup.id,
            _text_match(member, op, value, case_exact=True),
        )
    )


def _bool_match(
    attribute: InstrumentedAttribute[bool], op: Operator, value: object
) -> ColumnElement[bool]:
    if op == "pr":
        return true()
    if op == "eq" and isinstance(value, bool):
        return attribute.is_(value)
    return false()


def _user_match(match: Match) -> ColumnElement[bool]:
    op, value = match.op, match.value
    if match.attribute == "id":
        return _text_match(cast(ScimUser.id, String), op, value, case_exact=True)
    if match.attribute == "userName":
        return _text_match(ScimUser.user_name, op, value, case_exact=False)
    if match.attribute == "externalId":
        return _text_match(ScimUser.external_id, op, value, case_exact=True)
    if match.attribute == "active":
        return _bool_match(ScimUser.active, op, value)
    if match.attribute == "displayName":
        return _text_match(ScimUser.resource["displayName"].astext, op, value, case_exact=False)
    if match.attribute == "emails.value":
        return _email_match(op, value)
    raise ValueError(f"Users are not filtered on {match.attribute}")


def _group_match(match: Match) -> ColumnElement[bool]:
    op, value = match.op, match.value
    if match.attribute == "id":
        return _text_match(cast(ScimGroup.id, String), op, value, case_exact=True)
    if match.attribute == "displayName":
        return _text_match(ScimGroup.display_name, op, value, case_exact=False)
    if match.attribute == "externalId":
        return _text_match(ScimGroup.external_id, op, value, case_exact=True)
    if match.attribute == "members.value":
        return _member_match(op, value)
    raise ValueError(f"Groups are not filtered on {match.attribute}")


def _where(
    criterion: Criterion | None, leaf: Callable[[Match], ColumnElement[bool]]
) -> ColumnElement[bool]:
    if criterion is None:
        return true()
    if isinstance(criterion, Match):
        return leaf(criterion)
    if isinstance(criterion, AllOf):
        return and_(*(_where(term, leaf) for term in criterion.terms))
    if isinstance(criterion, AnyOf):
        return or_(*(_where(term, leaf) for term in criterion.terms))
    # A comparison with a missing attribute is NULL in SQL; SCIM counts it as false, so `not`
    # of it is true.
    return not_(func.coalesce(_where(criterion.term, leaf), false()))


# Users


async def list_users(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    criterion: Criterion | None,
    *,
    offset: int,
    limit: int,
) -> tuple[list[ScimUser], int]:
    where = and_(ScimUser.tenant_id == tenant_id, _where(criterion, _user_match))
    total = await session.execute(select(func.count()).select_from(ScimUser).where(where))
    count = int(total.scalar_one())
    if limit <= 0 or offset >= count:
        return [], count
    result = await session.execute(
        select(ScimUser)
        .where(where)
        .order_by(ScimUser.created_at, ScimUser.id)
        .offset(offset)
        .limit(limit)
    )
    return list(result.scalars()), count


async def get_user(
    session: AsyncSession, tenant_id: uuid.UUID, scim_user_id: uuid.UUID
) -> ScimUser | None:
    result = await session.execute(
        select(ScimUser).where(ScimUser.tenant_id == tenant_id, ScimUser.id == scim_user_id)
    )
    return result.scalar_one_or_none()


async def user_name_taken(
    session: AsyncSession, tenant_id: uuid.UUID, user_name: str, *, other_than: uuid.UUID | None
) -> bool:
    query = select(ScimUser.id).where(
        ScimUser.tenant_id == tenant_id, func.lower(ScimUser.user_name) == func.lower(user_name)
    )
    if other_than is not None:
        query = query.where(ScimUser.id != other_than)
    return (await session.execute(query.limit(1))).first() is not None


async def existing_user_ids(
    session: AsyncSession, tenant_id: uuid.UUID, ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for batch in _batches(ids):
        result = await session.execute(
            select(ScimUser.id).where(ScimUser.tenant_id == tenant_id, ScimUser.id.in_(batch))
        )
        found.update(result.scalars())
    return found


async def users_by_ids(
    session: AsyncSession, tenant_id: uuid.UUID, ids: Collection[uuid.UUID]
) -> list[ScimUser]:
    found: list[ScimUser] = []
    for batch in _batches(ids):
        result = await session.execute(
            select(ScimUser).where(ScimUser.tenant_id == tenant_id, ScimUser.id.in_(batch))
        )
        found.extend(result.scalars())
    return found


async def add_user(session: AsyncSession, *, tenant_id: uuid.UUID, **fields: Any) -> ScimUser:
    user = ScimUser(id=uuid.uuid4(), tenant_id=tenant_id, **fields)
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def update_user(session: AsyncSession, user: ScimUser, **fields: Any) -> ScimUser:
    """Change the user and its version (the ETag its provider sees)."""
    for key, value in fields.items():
        setattr(user, key, value)
    user.version += 1
    await session.flush()
    await session.refresh(user)
    return user


async def delete_user(session: AsyncSession, user: ScimUser) -> None:
    await session.delete(user)
    await session.flush()


async def find_for_email(
    session: AsyncSession, tenant_id: uuid.UUID, email: str
) -> ScimUser | None:
    """An unbound SCIM user of the tenant whose userName or one of whose emails is `email`;
    a userName match wins over an email match."""
    by_name = func.lower(ScimUser.user_name) == func.lower(email)
    result = await session.execute(
        select(ScimUser)
        .where(
            ScimUser.tenant_id == tenant_id,
            ScimUser.user_id.is_(None),
            or_(by_name, _email_match("eq", email)),
        )
        .order_by(case((by_name, 0), else_=1), ScimUser.created_at)
        .limit(1)
    )
    return result.scalar_one_or_none()


async def by_user(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> ScimUser | None:
    result = await session.execute(
        select(ScimUser)
        .where(ScimUser.tenant_id == tenant_id, ScimUser.user_id == user_id)
        .order_by(ScimUser.created_at)
        .limit(1)
    )
    return result.scalar_one_or_none()


async def bind(session: AsyncSession, scim_user: ScimUser, user_id: uuid.UUID) -> None:
    scim_user.user_id = user_id
    await session.flush()


# Groups


async def list_groups(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    criterion: Criterion | None,
    *,
    offset: int,
    limit: int,
) -> tuple[list[ScimGroup], int]:
    where = and_(ScimGroup.tenant_id == tenant_id, _where(criterion, _group_match))
    total = await session.execute(select(func.count()).select_from(ScimGroup).where(where))
    count = int(total.scalar_one())
    if limit <= 0 or offset >= count:
        return [], count
    result = await session.execute(
        select(ScimGroup)
        .where(where)
        .order_by(ScimGroup.created_at, ScimGroup.id)
        .offset(offset)
        .limit(limit)
    )
    return list(result.scalars()), count


async def get_group(
    session: AsyncSession, tenant_id: uuid.UUID, group_id: uuid.UUID
) -> ScimGroup | None:
    result = await session.execute(
        select(ScimGroup).where(ScimGroup.tenant_id == tenant_id, ScimGroup.id == group_id)
    )
    return result.scalar_one_or_none()


async def group_name_taken(
    session: AsyncSession, tenant_id: uuid.UUID, name: str, *, other_than: uuid.UUID | None
) -> bool:
    query = select(ScimGroup.id).where(
        ScimGroup.tenant_id == tenant_id, func.lower(ScimGroup.display_name) == func.lower(name)
    )
    if other_than is not None:
        query = query.where(ScimGroup.id != other_than)
    return (await session.execute(query.limit(1))).first() is not None


async def add_group(session: AsyncSession, *, tenant_id: uuid.UUID, **fields: Any) -> ScimGroup:
    group = ScimGroup(id=uuid.uuid4(), tenant_id=tenant_id, **fields)
    session.add(group)
    await session.flush()
    await session.refresh(group)
    return group


async def update_group(session: AsyncSession, group: ScimGroup, **fields: Any) -> ScimGroup:
    """Change the group (its members included) and its version."""
    for key, value in fields.items():
        setattr(group, key, value)
    group.version += 1
    await session.flush()
    await session.refresh(group)
    return group


async def delete_group(session: AsyncSession, group: ScimGroup) -> None:
    await session.delete(group)
    await session.flush()


async def members(
    session: AsyncSession, group_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The SCIM user ids in each group."""
    found: dict[uuid.UUID, list[uuid.UUID]] = {group_id: [] for group_id in group_ids}
    if not group_ids:
        return found
    result = await session.execute(
        select(ScimGroupMember.group_id, ScimGroupMember.scim_user_id)
        .where(ScimGroupMember.group_id.in_(group_ids))
        .order_by(ScimGroupMember.group_id, ScimGroupMember.scim_user_id)
    )
    for group_id, user_id in result.all():
        found[group_id].append(user_id)
    return found


async def add_members(
    session: AsyncSession, tenant_id: uuid.UUID, group_id: uuid.UUID, ids: Collection[uuid.UUID]
) -> None:
    for batch in _batches(ids):
        await session.execute(
            insert(ScimGroupMember)
            .values(
                [{"tenant_id": tenant_id, "group_id": group_id, "scim_user_id": i} for i in batch]
            )
            .on_conflict_do_nothing()
        )


async def remove_members(
    session: AsyncSession, group_id: uuid.UUID, ids: Collection[uuid.UUID]
) -> None:
    for batch in _batches(ids):
        await session.execute(
            delete(ScimGroupMember).where(
                ScimGroupMember.group_id == group_id, ScimGroupMember.scim_user_id.in_(batch)
            )
        )


async def groups_of(
    session: AsyncSession, scim_user_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ScimGroup]]:
    """The groups each SCIM user is in."""
    found: dict[uuid.UUID, list[ScimGroup]] = {user_id: [] for user_id in scim_user_ids}
    for batch in _batches(scim_user_ids):
        result = await session.execute(
            select(ScimGroupMember.scim_user_id, ScimGroup)
            .join(ScimGroup, ScimGroup.id == ScimGroupMember.group_id)
            .where(ScimGroupMember.scim_user_id.in_(batch))
            .order_by(ScimGroup.display_name)
        )
        for user_id, group in result.all():
            found[user_id].append(group)
    return found


async def group_names(session: AsyncSession, scim_user_id: uuid.UUID) -> list[str]:
    result = await session.execute(
        select(ScimGroup.display_name)
        .join(ScimGroupMember, ScimGroupMember.group_id == ScimGroup.id)
        .where(ScimGroupMember.scim_user_id == scim_user_id)
    )
    return list(result.scalars())
