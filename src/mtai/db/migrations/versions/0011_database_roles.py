"""Platform role, users protected, definer search paths, composite keys (findings 11, 12).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

The platform bypass was the setting `app.scope = 'platform'`, which any SQL the app role runs
can set. It is now membership in a NOLOGIN role, `<app role>_platform`, that inherits the app
role's privileges: `mtai_platform_scope()` is redefined to check it, so every policy made by
`enable_tenant_rls` (those of 0001-0010 and any later one) changes with it. The app's tenant
connections run as the app role, whose logins are not members of the platform role: `SET ROLE`
to it is refused (db/engine.py, `mtai migrate --create-logins`).

Tables that only the platform may change (users' identity columns, the model catalog, the
tenants themselves) become read-only to the app role; `users` gets row-level security: a tenant
transaction sees the identities of that tenant's members, nothing else.

SECURITY DEFINER functions run with `search_path = pg_catalog, public, pg_temp` (before, pg_temp
was implicitly searched first, so a caller's temporary table could stand in for the owner's),
and the ones of 0007 name every table with its schema.

`messages` and `rag_chunks` point at their parents with the tenant in the key, as rag_documents
does: a message cannot join another tenant's conversation, and a chunk cannot count in another
tenant's knowledge base (its collection must be its document's).
"""

import re
from collections.abc import Sequence
from importlib import import_module

from alembic import context, op
from sqlalchemy import text

from mtai.db.rls import DEFINER_SEARCH_PATH, HELPER_FUNCTIONS, ident, platform_scope_function
from mtai.db.rls import platform_role as platform_role_of

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Changed only by platform work: the app role keeps SELECT.
PLATFORM_WRITTEN = ("tenants", "models")
# users' columns the app role may not change (the rest, e.g. display_name, it may): who a
# person is and whether their sessions hold are written only in the platform scope, so a
# compromised tenant transaction cannot revive a revoked session or a disabled account.
IDENTITY_COLUMNS = (
    "id",
    "email",
    "password_hash",
    "is_platform_admin",
    "is_active",
    "token_version",
    "email_verified",
    "created_at",
)

USERS_POLICY = """CREATE POLICY users_visibility ON users
    USING ((SELECT public.mtai_platform_scope()) OR EXISTS (
        SELECT 1 FROM public.memberships m
        WHERE m.user_id = users.id AND m.tenant_id = (SELECT public.mtai_tenant())))
    WITH CHECK ((SELECT public.mtai_platform_scope()) OR EXISTS (
        SELECT 1 FROM public.memberships m
        WHERE m.user_id = users.id AND m.tenant_id = (SELECT public.mtai_tenant())))"""

_OWNED_NAMES = re.compile(
    r"(?<![.\w])(rag_chunks|rag_terms|rag_collection_sizes|rag_collections|mtai_tenant|"
    r"mtai_keyword_candidates|mtai_vector_walk|mtai_count_terms)\b(?!\.)"
)


def _qualified(function_sql: str) -> str:
    """0007's function text with schema-qualified names and the pinned search path."""
    sql = function_sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    sql = sql.replace(
        "SET search_path = pg_catalog, public\n", f"SET search_path = {DEFINER_SEARCH_PATH}\n"
    )
    return _OWNED_NAMES.sub(r"public.\1", sql)


def _definer_functions() -> list[str]:
    rows = op.get_bind().execute(
        text(
            "SELECT p.oid::regprocedure::text FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.prosecdef"
        )
    )
    return [str(r[0]) for r in rows]


def _foreign_key(table: str, columns: list[str]) -> str | None:
    """Name of `table`'s foreign key over exactly `columns` (in order), if any."""
    name = (
        op.get_bind()
        .execute(
            text(
                "SELECT c.conname FROM pg_constraint c WHERE c.contype = 'f' "
                "AND c.conrelid = CAST(:table AS regclass) AND ARRAY(SELECT a.attname::text "
                "FROM unnest(c.conkey) WITH ORDINALITY k(num, pos) JOIN pg_attribute a "
                "ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.pos) = :columns"
            ),
            {"table": table, "columns": columns},
        )
        .scalar_one_or_none()
    )
    return str(name) if name is not None else None


def _drop_foreign_key(table: str, columns: list[str]) -> None:
    name = _foreign_key(table, columns)
    if name is not None:
        op.execute(f'ALTER TABLE {ident(table)} DROP CONSTRAINT "{name}"')


def _user_columns() -> list[str]:
    rows = op.get_bind().execute(
        text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'users' ORDER BY ordinal_position"
        )
    )
    return [str(r[0]) for r in rows]


def upgrade() -> None:
    role = ident(context.config.attributes["app_role"])
    platform = platform_role_of(role)

    # The platform role: every privilege of the app role, and the bypass.
    op.execute(
        f"""DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{platform}') THEN
            CREATE ROLE {platform} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
          END IF;
        END $$"""
    )
    op.execute(f"GRANT {role} TO {platform}")
    # As for the app role: the migrating owner SETs ROLE to it when one login serves both.
    op.execute(f"GRANT {platform} TO current_user")
    op.execute(platform_scope_function(role))

    # Platform-only tables.
    for table in PLATFORM_WRITTEN:
        op.execute(f"REVOKE INSERT, UPDATE, DELETE ON {table} FROM {role}")
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {platform}")

    # users: a tenant sees its members; identity columns change only in the platform scope.
    op.execute("ALTER TABLE users ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE users FORCE ROW LEVEL SECURITY")
    op.execute(USERS_POLICY)
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON users FROM {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON users TO {platform}")
    changeable = [c for c in _user_columns() if c not in IDENTITY_COLUMNS]
    op.execute(f"GRANT UPDATE ({', '.join(ident(c) for c in changeable)}) ON users TO {role}")

    # SECURITY DEFINER functions: schema-qualified bodies, and pg_temp searched last.
    terms = import_module("mtai.db.migrations.versions.0007_keyword_terms")
    for function_sql in (terms.COUNT_TERMS, terms.VECTOR_WALK, terms.KEYWORD_CANDIDATES):
        op.execute(_qualified(function_sql))
    for function in _definer_functions():
        op.execute(f"ALTER FUNCTION {function} SET search_path = {DEFINER_SEARCH_PATH}")

    # Composite foreign keys: the parent must be the same tenant's.
    op.execute(
        "ALTER TABLE conversations ADD CONSTRAINT conversations_tenant_id UNIQUE (tenant_id, id)"
    )
    _drop_foreign_key("messages", ["conversation_id"])
    op.execute(
        "ALTER TABLE messages ADD CONSTRAINT messages_conversation FOREIGN KEY "
        "(tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE"
    )
    op.execute(
        "ALTER TABLE rag_documents ADD CONSTRAINT rag_documents_tenant_collection_id "
        "UNIQUE (tenant_id, collection_id, id)"
    )
    _drop_foreign_key("rag_chunks", ["tenant_id", "document_id"])
    op.execute(
        "ALTER TABLE rag_chunks ADD CONSTRAINT rag_chunks_document FOREIGN KEY "
        "(tenant_id, collection_id, document_id) "
        "REFERENCES rag_documents (tenant_id, collection_id, id) ON DELETE CASCADE"
    )


def downgrade() -> None:
    role = ident(context.config.attributes["app_role"])
    platform = platform_role_of(role)

    op.execute("ALTER TABLE rag_chunks DROP CONSTRAINT rag_chunks_document")
    op.execute(
        "ALTER TABLE rag_chunks ADD FOREIGN KEY (tenant_id, document_id) "
        "REFERENCES rag_documents (tenant_id, id) ON DELETE CASCADE"
    )
    op.execute("ALTER TABLE rag_documents DROP CONSTRAINT rag_documents_tenant_collection_id")
    op.execute("ALTER TABLE messages DROP CONSTRAINT messages_conversation")
    op.execute(
        "ALTER TABLE messages ADD FOREIGN KEY (conversation_id) "
        "REFERENCES conversations (id) ON DELETE CASCADE"
    )
    op.execute("ALTER TABLE conversations DROP CONSTRAINT conversations_tenant_id")

    terms = import_module("mtai.db.migrations.versions.0007_keyword_terms")
    for function_sql in (terms.COUNT_TERMS, terms.VECTOR_WALK, terms.KEYWORD_CANDIDATES):
        op.execute(function_sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))

    op.execute("DROP POLICY users_visibility ON users")
    op.execute("ALTER TABLE users NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE users DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE UPDATE ON users FROM {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON users TO {role}")
    for table in PLATFORM_WRITTEN:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")

    # The setting-based bypass of 0001 (HELPER_FUNCTIONS[1]) comes back.
    op.execute(HELPER_FUNCTIONS[1])
    op.execute(f"REVOKE ALL ON users, {', '.join(PLATFORM_WRITTEN)} FROM {platform}")
    op.execute(f"REVOKE {platform} FROM current_user")
    op.execute(f"REVOKE {role} FROM {platform}")
