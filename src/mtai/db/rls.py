"""Row-level security DDL shared by every migration that adds a tenant-owned table.

The tenant comes from the per-transaction setting `app.tenant_id` (set with
`set_config(..., true)`, never session-wide); a transaction without it sees no rows.
The one explicit bypass, used by audited platform operations, is the platform role
(`<app role>_platform`, migration 0011): `mtai_platform_scope()` is true only when the current
role is a member of it, which no setting can change and the app role's logins cannot reach
(`SET ROLE` needs the membership). Migrations 0001-0010 defined the bypass as the setting
`app.scope = 'platform'`, which any SQL could set; 0011 redefined the function, so every
policy made with `enable_tenant_rls`, earlier or later, checks the role.
"""

from __future__ import annotations

import re

from alembic import op

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

HELPER_FUNCTIONS = (
    """CREATE OR REPLACE FUNCTION mtai_tenant() RETURNS uuid LANGUAGE sql STABLE AS
    $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$""",
    """CREATE OR REPLACE FUNCTION mtai_platform_scope() RETURNS boolean LANGUAGE sql STABLE AS
    $$ SELECT coalesce(current_setting('app.scope', true), '') = 'platform' $$""",
)


# Names inside SECURITY DEFINER functions resolve through this path; pg_temp comes last, where
# a temporary object of the caller's cannot stand in for one of the owner's.
DEFINER_SEARCH_PATH = "pg_catalog, public, pg_temp"


def ident(name: str) -> str:
    """A checked SQL identifier; role and table names here come from code, not from users."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def platform_role(app_role: str) -> str:
    """The NOLOGIN role whose members see every tenant's rows: `<app role>_platform`."""
    return ident(f"{ident(app_role)}_platform")


def platform_scope_function(app_role: str) -> str:
    """`mtai_platform_scope()` as migration 0011 defines it: membership, not a setting.

    Not SECURITY DEFINER, so `current_user` is the caller's role after any SET ROLE.
    """
    role = platform_role(app_role)
    return f"""CREATE OR REPLACE FUNCTION public.mtai_platform_scope() RETURNS boolean
    LANGUAGE sql STABLE AS
    $$ SELECT pg_catalog.pg_has_role(current_user, '{role}', 'MEMBER') $$"""


def enable_tenant_rls(table: str, column: str = "tenant_id") -> None:
    """Bind `table` (its owner too) to the current tenant or the platform role's members."""
    t, c = ident(table), ident(column)
    predicate = f"{c} = (SELECT mtai_tenant()) OR (SELECT mtai_platform_scope())"
    op.execute(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {t}_tenant_isolation ON {t} USING ({predicate}) WITH CHECK ({predicate})"
    )


def grant_app(table: str, role: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    op.execute(f"GRANT {privileges} ON {ident(table)} TO {ident(role)}")
