"""Row-level security DDL shared by every migration that adds a tenant-owned table.

The tenant comes from the per-transaction setting `app.tenant_id` (set with
`set_config(..., true)`, never session-wide); a transaction without it sees no rows.
`app.scope = 'platform'` is the one explicit bypass, used by audited platform operations.
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


def ident(name: str) -> str:
    """A checked SQL identifier; role and table names here come from code, not from users."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def enable_tenant_rls(table: str, column: str = "tenant_id") -> None:
    """Bind `table` (its owner too) to the current tenant or the platform scope."""
    t, c = ident(table), ident(column)
    predicate = f"{c} = (SELECT mtai_tenant()) OR (SELECT mtai_platform_scope())"
    op.execute(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {t}_tenant_isolation ON {t} USING ({predicate}) WITH CHECK ({predicate})"
    )


def grant_app(table: str, role: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    op.execute(f"GRANT {privileges} ON {ident(table)} TO {ident(role)}")
