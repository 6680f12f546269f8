"""A language per knowledge base for keyword search (issue 17).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

Keyword search parsed every chunk and every query with PostgreSQL's `english` text search
configuration: German words were stemmed as if English (so "Häuser" never found "Haus") and
English stop words were dropped from French. `rag_collections.language` is now the
configuration of a knowledge base (`english` by default; `simple` for mixed content: no
stemming, no stop words), and each chunk carries its knowledge base's (`rag_chunks.language`,
set from the knowledge base as the chunk is written), so the stored `tsv` is computed with it.
PostgreSQL 15 cannot change a generated column's expression, so `tsv` and its GIN index are
made again: the table is rewritten once (about a minute per million chunks). The lexemes of
existing chunks do not change (they are all `english`), so the term counts stay exact.

`mtai_keyword_candidates` takes the language (`p_language`) and parses the query with it; a
search groups its knowledge bases by language (services/retrieval.py).
"""

from collections.abc import Sequence
from importlib import import_module

from alembic import context, op

from mtai.db.rls import ident

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BM25 = import_module("mtai.db.migrations.versions.0015_bm25")
OLD_SIGNATURE = _BM25.SIGNATURE
SIGNATURE = (
    "public.mtai_keyword_candidates(uuid[], text, integer, uuid[], jsonb, real, real, regconfig)"
)


def _with_language(function_sql: str) -> str:
    """0015's function, with the language as its last parameter and the query parsed by it."""
    parameters = "p_k1 real DEFAULT 1.2, p_b real DEFAULT 0.75"
    parsed = "'english', p_query"
    assert function_sql.count(parameters) == 1
    assert function_sql.count(parsed) == 2
    return function_sql.replace(
        parameters, parameters + ",\n    p_language regconfig DEFAULT 'english'"
    ).replace(parsed, "p_language, p_query")


KEYWORD_CANDIDATES = _with_language(_BM25.KEYWORD_CANDIDATES)


def _rebuild_tsv(expression: str) -> None:
    op.execute("DROP INDEX rag_chunks_tsv")
    op.execute("ALTER TABLE rag_chunks DROP COLUMN tsv")
    op.execute(
        f"ALTER TABLE rag_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS ({expression}) STORED"
    )
    op.execute("CREATE INDEX rag_chunks_tsv ON rag_chunks USING gin (tsv)")


def upgrade() -> None:
    role = ident(context.config.attributes["app_role"])
    op.execute(
        "ALTER TABLE rag_collections ADD COLUMN language regconfig NOT NULL DEFAULT 'english'"
    )
    op.execute("ALTER TABLE rag_chunks ADD COLUMN language regconfig NOT NULL DEFAULT 'english'")
    _rebuild_tsv("to_tsvector(language, heading || ' ' || text)")
    op.execute(f"DROP FUNCTION {OLD_SIGNATURE}")
    op.execute(KEYWORD_CANDIDATES)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {role}")


def downgrade() -> None:
    role = ident(context.config.attributes["app_role"])
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute(_BM25.KEYWORD_CANDIDATES)
    op.execute(f"REVOKE ALL ON FUNCTION {OLD_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {OLD_SIGNATURE} TO {role}")
    # Chunks of other languages are parsed as English again; their counts follow.
    op.execute("UPDATE rag_chunks SET language = 'english' WHERE language <> 'english'::regconfig")
    _rebuild_tsv("to_tsvector('english', heading || ' ' || text)")
    op.execute("ALTER TABLE rag_chunks DROP COLUMN language")
    op.execute("ALTER TABLE rag_collections DROP COLUMN language")
