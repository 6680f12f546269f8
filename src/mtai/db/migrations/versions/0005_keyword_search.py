"""Keyword search through the full-text index, under the tenant's scope.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Row-level security keeps PostgreSQL from using the GIN index for `tsv @@ query` as the app
role: `@@` is not LEAKPROOF, so the tenant policy is checked first, on every row (140 ms at
100k chunks, docs/benchmarks.md). `mtai_keyword_candidates` runs the keyword part as the table
owner instead, and applies the tenant filter itself, from the same per-transaction setting the
policy uses (`mtai_tenant()`): without it, it returns nothing. rag_chunks therefore keeps RLS
enabled for every other role but no longer forces it on its owner, the role that runs
migrations, which the app never uses for queries.

The candidate set is bounded: a query's words are ORed, and a word that matches `cap` chunks
or more (cap = 20 x the candidates asked) selects nothing by itself, though it still counts in
the ranking. Only when every word is that common is the set cut at `cap` chunks.
"""

from collections.abc import Sequence

from alembic import context, op

from mtai.db.rls import ident

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "mtai_keyword_candidates(uuid[], text, integer, uuid[], jsonb)"

FUNCTION = """
CREATE FUNCTION mtai_keyword_candidates(
    p_collections uuid[], p_query text, p_candidates integer,
    p_documents uuid[] DEFAULT NULL, p_metadata jsonb DEFAULT NULL
) RETURNS TABLE (id uuid, score real)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
DECLARE
    tenant uuid := mtai_tenant();
    ranked tsquery := replace(
        plainto_tsquery('english', p_query)::text, ' & ', ' | ')::tsquery;
    cap integer := greatest(p_candidates, 1) * 20;
    lexeme text;
    matches integer;
    rarest text;
    rarest_matches integer;
    selective text[] := '{}';
    selecting tsquery;
    approximate boolean := false;
BEGIN
    IF tenant IS NULL OR numnode(ranked) = 0 THEN
        RETURN;
    END IF;
    FOREACH lexeme IN ARRAY tsvector_to_array(to_tsvector('english', p_query)) LOOP
        SELECT count(*) INTO matches FROM (
            SELECT 1 FROM rag_chunks c
            WHERE c.tenant_id = tenant AND c.collection_id = ANY(p_collections)
              AND c.tsv @@ quote_literal(lexeme)::tsquery
            LIMIT cap) found;
        IF matches < cap THEN
            selective := selective || lexeme;
        END IF;
        IF rarest_matches IS NULL OR matches < rarest_matches THEN
            rarest := lexeme;
            rarest_matches := matches;
        END IF;
    END LOOP;
    IF cardinality(selective) = 0 THEN
        selective := ARRAY[rarest];
        approximate := true;
    END IF;
    SELECT string_agg(quote_literal(l), ' | ')::tsquery INTO selecting FROM unnest(selective) l;
    RETURN QUERY
        SELECT m.id, ts_rank(m.tsv, ranked, 1) AS score
        FROM (
            SELECT c.id, c.tsv FROM rag_chunks c
            WHERE c.tenant_id = tenant AND c.collection_id = ANY(p_collections)
              AND c.tsv @@ selecting
              AND (p_documents IS NULL OR c.document_id = ANY(p_documents))
              AND (p_metadata IS NULL OR c.metadata @> p_metadata)
            LIMIT CASE WHEN approximate THEN cap END
        ) m
        ORDER BY 2 DESC, 1
        LIMIT p_candidates;
END
$$
"""


def upgrade() -> None:
    role = ident(context.config.attributes["app_role"])
    op.execute("ALTER TABLE rag_chunks NO FORCE ROW LEVEL SECURITY")
    op.execute(FUNCTION)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {role}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute("ALTER TABLE rag_chunks FORCE ROW LEVEL SECURITY")
