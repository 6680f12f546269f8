"""SCIM 2.0 as mtai speaks it, through scim2-models (RFC 7643 resources, RFC 7644 messages):
the resources served, the service description, reading what identity providers send, and
SCIM filters turned into repository criteria.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import Field, ValidationError
from scim2_models import (
    URN,
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    ComplexAttribute,
    Context,
    EnterpriseUser,
    Error,
    ETag,
    Filter,
    InvalidFilterException,
    InvalidSyntaxException,
    Mutability,
    Patch,
    PatchOp,
    PayloadTooLargeException,
    Reference,
    Required,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimFilter,
    ScimPolicy,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    User,
)
from scim2_models.path import (
    AttributeBinding,
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
    coerce_value,
)

from mtai.db.repositories.scim import (
    GROUP_ATTRIBUTES,
    USER_ATTRIBUTES,
    AllOf,
    AnyOf,
    Criterion,
    Match,
    Negation,
    Operator,
)

# The most resources one list answers (advertised as filter.maxResults).
MAX_RESULTS = 200
# The most group members one request may carry; providers send larger groups in batches.
MAX_MEMBERS_PER_REQUEST = 1000
# The most comparisons one filter may hold: each is a bound parameter of one SQL query.
MAX_FILTER_TERMS = 100
CORE = "urn:ietf:params:scim:schemas:core:2.0"

ResourceT = TypeVar("ResourceT", bound=Resource[Any])


class Member(ComplexAttribute):
    """A member of a group: one of the tenant's SCIM users (groups do not nest here).

    `display` is left out on purpose: mtai stores memberships, not the labels a provider
    attached to them, and a server-chosen label would differ from what was sent.
    """

    value: Annotated[str | None, Mutability.immutable, CaseExact.true] = None
    ref: Annotated[Reference[User] | None, Mutability.immutable] = Field(  # type: ignore[type-arg]
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    type: Annotated[str | None, Mutability.immutable] = Field(None, examples=["User"])


class Group(Resource[Any]):
    """A group of the tenant's directory; its display name is what group-to-role maps name."""

    __schema__ = URN(f"{CORE}:Group")

    display_name: Annotated[str | None, Required.true] = None
    members: list[Member] | None = None


# What identity providers send beyond the RFC, accepted rather than refused: attributes no schema
# here declares (Okta's and Entra's custom extensions) are ignored; Entra's PATCH `remove` names
# the members to drop in `value`, and its `add` to `emails[type eq "work"].value` creates the
# entry it filters on.
POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

UserResource = User[EnterpriseUser]

PROVIDER = ScimProvider(
    models=[User, EnterpriseUser, Group],
    resource_types=[ResourceType.from_resource(UserResource), ResourceType.from_resource(Group)],
    config=ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="The tenant's SCIM token: Authorization: Bearer <token>.",
                primary=True,
            )
        ],
    ),
    policy=POLICY,
)

# The attributes lists are filtered on (what Okta and Entra send, and more), by SCIM URN.
USER_FILTERS = {f"{CORE}:User:{name}".casefold(): name for name in USER_ATTRIBUTES}
GROUP_FILTERS = {f"{CORE}:Group:{name}".casefold(): name for name in GROUP_ATTRIBUTES}
_OPERATORS: dict[CompareOperator, Operator] = {
    CompareOperator.eq: "eq",
    CompareOperator.co: "co",
    CompareOperator.sw: "sw",
    CompareOperator.ew: "ew",
}


def scim_error(exc: ValidationError) -> SCIMException:
    """The SCIM error a payload's first validation error stands for (invalidValue, ...)."""
    return SCIMException.from_error(Error.from_validation_error(exc.errors()[0]))


def validated(model: type[ResourceT], payload: Mapping[str, Any], context: Context) -> ResourceT:
    """A resource read from a request body; its `schemas` must name the resource's schema."""
    schemas = payload.get("schemas")
    wanted = str(model.__schema__).casefold()
    if not isinstance(schemas, list) or wanted not in {str(s).casefold() for s in schemas}:
        raise InvalidSyntaxException(detail=f"'schemas' must include {model.__schema__}.")
    try:
        return model.model_validate(payload, scim_ctx=context, scim_policy=POLICY)
    except ValidationError as exc:
        raise scim_error(exc) from exc


def _entra_manager(operation: Any) -> Any:
    """Entra sends the enterprise `manager` as the bare id; RFC 7643 makes it a complex value."""
    if (
        isinstance(operation, dict)
        and str(operation.get("path", "")).casefold().endswith(":user:manager")
        and isinstance(operation.get("value"), str)
    ):
        return {**operation, "value": {"value": operation["value"]}}
    return operation


def patch_request(model: type[ResourceT], payload: Mapping[str, Any]) -> PatchOp[ResourceT]:
    operations = payload.get("Operations")
    if isinstance(operations, list):
        payload = {**payload, "Operations": [_entra_manager(op) for op in operations]}
    try:
        patch: PatchOp[ResourceT] = PatchOp[model].model_validate(  # type: ignore[valid-type]
            payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=POLICY
        )
    except ValidationError as exc:
        raise scim_error(exc) from exc
    return patch


def check_member_count(payload: Mapping[str, Any]) -> None:
    """Refuse a group request carrying more members than one request may (413)."""

    def count(value: Any) -> int:
        return len(value) if isinstance(value, list) else 1

    total = count(payload.get("members")) if "members" in payload else 0
    operations = payload.get("Operations")
    for operation in operations if isinstance(operations, list) else []:
        if not isinstance(operation, dict):
            continue
        value = operation.get("value")
        path = str(operation.get("path", "")).casefold().removeprefix(f"{CORE}:group:".casefold())
        if path.startswith("members"):
            total += count(value)
        elif isinstance(value, dict) and "members" in value:
            total += count(value["members"])
    if total > MAX_MEMBERS_PER_REQUEST:
        raise PayloadTooLargeException(
            detail=f"At most {MAX_MEMBERS_PER_REQUEST} group members per request; send the "
            "rest in further PATCH requests."
        )


def search_request(
    model: type[ResourceT],
    query: Mapping[str, Any],
    context: Context = Context.RESOURCE_QUERY_REQUEST,
) -> SearchRequest[ResourceT]:
    """A list request's parameters (query string of GET, or the body of POST .search)."""
    fields = ("filter", "startIndex", "count", "attributes", "excludedAttributes")
    try:
        search: SearchRequest[ResourceT] = SearchRequest[model].model_validate(  # type: ignore[valid-type]
            {key: query[key] for key in fields if key in query}, scim_ctx=context
        )
    except ValidationError as exc:
        raise scim_error(exc) from exc
    return search


def response_parameters(
    model: type[ResourceT], query: Mapping[str, Any]
) -> ResponseParameters[ResourceT]:
    fields = ("attributes", "excludedAttributes")
    try:
        wanted: ResponseParameters[ResourceT] = ResponseParameters[model].model_validate(  # type: ignore[valid-type]
            {key: query[key] for key in fields if key in query}
        )
    except ValidationError as exc:
        raise scim_error(exc) from exc
    return wanted


def page(search: SearchRequest[Any]) -> tuple[int, int]:
    """(offset, limit) of a list request: startIndex is 1-based, count is capped."""
    offset = (search.start_index or 1) - 1
    limit = MAX_RESULTS if search.count is None else min(search.count, MAX_RESULTS)
    return offset, limit


def returns(wanted: ResponseParameters[Any], attribute: str) -> bool:
    """Whether a response asked for with these parameters carries `attribute` (a top-level
    attribute of the core schema)."""

    def local(path: object) -> str:
        return str(path).casefold().rsplit(":", 1)[-1]

    name = attribute.casefold()
    if wanted.attributes:
        return any(local(path).split(".")[0] == name for path in wanted.attributes)
    return not any(local(path) == name for path in wanted.excluded_attributes or [])


def criterion(
    scim_filter: ScimFilter[Any] | None, attributes: Mapping[str, str]
) -> Criterion | None:
    """A validated filter as repository criteria over `attributes` (URN -> name); anything
    else is refused with invalidFilter rather than answered wrongly."""
    if scim_filter is None:
        return None
    return _Translator(scim_filter, attributes).node(scim_filter.ast)


class _Translator:
    def __init__(self, scim_filter: ScimFilter[Any], attributes: Mapping[str, str]) -> None:
        self.filter = scim_filter
        self.attributes = attributes
        self.terms = 0

    def _count(self) -> None:
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise InvalidFilterException(
                detail=f"A filter holds at most {MAX_FILTER_TERMS} comparisons."
            )

    def node(self, node: FilterNode) -> Criterion:
        if isinstance(node, LogicalExpr):
            terms = tuple(self.node(term) for term in node.terms)
            return AllOf(terms) if node.op == LogicalOperator.and_ else AnyOf(terms)
        if isinstance(node, Not):
            return Negation(self.node(node.expr))
        if isinstance(node, Present):
            self._count()
            name, _ = self._attribute(self.filter.resolve(node.attr_path), node)
            return Match(name, "pr")
        if isinstance(node, Comparison):
            self._count()
            name, binding = self._attribute(self.filter.resolve_comparison(node.attr_path), node)
            return self._comparison(name, binding, node)
        if isinstance(node, ValuePath):
            return self._value_path(node)
        raise InvalidFilterException(detail=f"Filter expression {node} is not supported.")

    def _attribute(
        self, binding: AttributeBinding | None, node: FilterNode
    ) -> tuple[str, AttributeBinding]:
        name = self.attributes.get(binding.urn.casefold()) if binding is not None else None
        if name is None or binding is None:
            raise InvalidFilterException(
                detail=f"Filtering on {node} is not supported; filter on "
                f"{', '.join(sorted(self.attributes.values()))}."
            )
        return name, binding

    def _comparison(self, name: str, binding: AttributeBinding, node: Comparison) -> Criterion:
        negate = node.op == CompareOperator.ne
        op = "eq" if negate else _OPERATORS.get(node.op)
        if op is None:
            raise InvalidFilterException(detail=f"Operator {node.op} is not supported.")
        value = coerce_value(binding, node.value, node.op)
        if name == "active" and (op != "eq" or not isinstance(value, bool)):
            raise InvalidFilterException(detail="active compares with eq or ne true/false.")
        if name != "active" and not isinstance(value, str):
            raise InvalidFilterException(detail=f"{name} compares with a string.")
        match = Match(name, op, value)
        return Negation(match) if negate else match

    def _value_path(self, node: ValuePath) -> Criterion:
        # `emails[value eq "x"]`, `members[value eq "id"]`: one test on the entry's value.
        inner = node.val_filter
        if (
            isinstance(inner, Comparison | Present)
            and inner.attr_path.attr.casefold() == "value"
            and inner.attr_path.sub_attr is None
            and inner.attr_path.uri is None
        ):
            outer = node.attr_path
            path = AttrPath(attr=outer.attr, sub_attr="value", uri=outer.uri)
            rewritten: FilterNode = (
                Comparison(path, inner.op, inner.value)
                if isinstance(inner, Comparison)
                else Present(path)
            )
            return self.node(rewritten)
        raise InvalidFilterException(detail=f"Filter expression {node} is not supported.")
