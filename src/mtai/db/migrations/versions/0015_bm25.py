"""Keyword search ranks by BM25 (issue 17).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

`ts_rank` is not BM25: it has no inverse document frequency (a word in every chunk counts as
much as a rare one) and no length normalisation against the knowledge base's average. The
counts the chunk triggers keep (migration 0007) hold what BM25 needs: a word's document
frequency is its `rag_terms` count and N is the knowledge bases' chunk count. This migration
adds the last figure, `rag_collection_sizes.lexemes`, the sum of the chunks' lengths, kept by
the same trigger. A chunk's length is its number of distinct words (`length(tsv)`): PostgreSQL
keeps no token count, and the distinct count is what the tsvector can say in O(1).

    score = sum over the query's words w in the chunk of
            idf(w) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length))
    idf(w) = ln(1 + (N - df + 0.5) / (df + 0.5))

tf is the number of positions the tsvector holds for the word. Candidates are still selected
through the GIN index, rarest words first and at most `cap` of them (migration 0007); only
those are scored. `p_k1` NULL ranks by `ts_rank` as before (MTAI_RAG_KEYWORD_RANKING=ts_rank,
kept so both can be compared on every evaluation set: docs/rag.md).
"""

from collections.abc import Sequence
from importlib import import_module

from alembic import context, op

from mtai.db.rls import ident

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_SIGNATURE = "public.mtai_keyword_candidates(uuid[], text, integer, uuid[], jsonb)"
SIGNATURE = "public.mtai_keyword_candidates(uuid[], text, integer, uuid[], jsonb, real, real)"

# As in migration 0007 (qualified by 0011), with the chunks' lengths summed per knowledge base.
COUNT_TERMS = """
CREATE OR REPLACE FUNCTION public.mtai_count_terms() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_advisory_xact_lock(7000700, hashtext(k.id::text))
        FROM (SELECT DISTINCT collection_id AS id FROM removed ORDER BY 1) k;
        UPDATE public.rag_terms t SET chunks = t.chunks - g.n
        FROM (
            SELECT r.collection_id, l.lexeme, count(*) AS n
            FROM removed r, unnest(tsvector_to_array(r.tsv)) l(lexeme)
            GROUP BY 1, 2
        ) g
        WHERE t.collection_id = g.collection_id AND t.lexeme = g.lexeme;
        UPDATE public.rag_collection_sizes s
        SET chunks = s.chunks - g.n, lexemes = s.lexemes - g.lexemes
        FROM (SELECT collection_id, count(*) AS n, sum(length(tsv)) AS lexemes
              FROM removed GROUP BY 1) g
        WHERE s.collection_id = g.collection_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_advisory_xact_lock(7000700, hashtext(k.id::text))
        FROM (SELECT DISTINCT collection_id AS id FROM added ORDER BY 1) k;
        INSERT INTO public.rag_terms (collection_id, lexeme, chunks)
        SELECT a.collection_id, l.lexeme, count(*)
        FROM added a, unnest(tsvector_to_array(a.tsv)) l(lexeme)
        GROUP BY 1, 2
        ORDER BY 1, 2
        ON CONFLICT (collection_id, lexeme)
        DO UPDATE SET chunks = public.rag_terms.chunks + excluded.chunks;
        INSERT INTO public.rag_collection_sizes (collection_id, chunks, lexemes)
        SELECT collection_id, count(*), sum(length(tsv)) FROM added GROUP BY 1 ORDER BY 1
        ON CONFLICT (collection_id)
        DO UPDATE SET chunks = public.rag_collection_sizes.chunks + excluded.chunks,
                      lexemes = public.rag_collection_sizes.lexemes + excluded.lexemes;
    END IF;
    RETURN NULL;
END
$$
"""

KEYWORD_CANDIDATES = """
CREATE FUNCTION public.mtai_keyword_candidates(
    p_collections uuid[], p_query text, p_candidates integer,
    p_documents uuid[] DEFAULT NULL, p_metadata jsonb DEFAULT NULL,
    p_k1 real DEFAULT 1.2, p_b real DEFAULT 0.75
) RETURNS TABLE (id uuid, score real)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    tenant uuid := public.mtai_tenant();
    ranked tsquery := replace(
        plainto_tsquery('english', p_query)::text, ' & ', ' | ')::tsquery;
    cap integer := greatest(p_candidates, 1) * 20;
    collections uuid[];
    selective text[];
    rarest text;
    words text[];
    frequencies bigint[];
    total bigint;
    average_length float8;
    selecting tsquery;
    approximate boolean := false;
BEGIN
    IF tenant IS NULL OR numnode(ranked) = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(k.id) INTO collections
    FROM public.rag_collections k WHERE k.tenant_id = tenant AND k.id = ANY(p_collections);
    IF collections IS NULL THEN
        RETURN;
    END IF;
    -- Rarest first, words select chunks while their matches add up to at most `cap` (the
    -- rarest always does, if it alone is under `cap`): the chunks to rank stay under `cap`.
    SELECT coalesce(array_agg(w.lexeme) FILTER (WHERE w.matches < cap
                                                AND (w.running <= cap OR w.position = 1)), '{}'),
           (array_agg(w.lexeme ORDER BY w.position))[1],
           array_agg(w.lexeme), array_agg(w.matches)
    INTO selective, rarest, words, frequencies
    FROM (
        SELECT c.lexeme, c.matches,
               sum(c.matches) OVER (ORDER BY c.matches, c.lexeme) AS running,
               row_number() OVER (ORDER BY c.matches, c.lexeme) AS position
        FROM (
            SELECT q.lexeme, coalesce(sum(t.chunks), 0) AS matches
            FROM unnest(tsvector_to_array(to_tsvector('english', p_query))) q(lexeme)
            LEFT JOIN public.rag_terms t
                ON t.lexeme = q.lexeme AND t.collection_id = ANY(collections)
            GROUP BY q.lexeme
        ) c
    ) w;
    IF cardinality(selective) = 0 THEN
        selective := ARRAY[rarest];
        approximate := true;
    END IF;
    SELECT string_agg(quote_literal(l), ' | ')::tsquery INTO selecting FROM unnest(selective) l;
    IF p_k1 IS NOT NULL THEN
        SELECT coalesce(sum(s.chunks), 0), coalesce(sum(s.lexemes), 0)::float8
               / greatest(coalesce(sum(s.chunks), 0), 1)
        INTO total, average_length
        FROM public.rag_collection_sizes s WHERE s.collection_id = ANY(collections);
    END IF;
    RETURN QUERY
        SELECT m.id, CASE
            WHEN p_k1 IS NULL THEN ts_rank(m.tsv, ranked, 1)
            ELSE (
                SELECT sum(
                    ln(1 + (total - q.df + 0.5) / (q.df + 0.5)) * f.tf * (p_k1 + 1)
                    / (f.tf + p_k1 * (1 - p_b + p_b * length(m.tsv) / greatest(average_length, 1)))
                )::real
                FROM (
                    SELECT u.lexeme, greatest(cardinality(u.positions), 1) AS tf
                    FROM unnest(m.tsv) u WHERE u.lexeme = ANY(words)
                ) f
                JOIN unnest(words, frequencies) q(lexeme, df) ON q.lexeme = f.lexeme
            )
        END AS score
        FROM (
            SELECT c.id, c.tsv FROM public.rag_chunks c
            WHERE c.tenant_id = tenant AND c.collection_id = ANY(collections)
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
    op.execute("ALTER TABLE rag_collection_sizes ADD COLUMN lexemes bigint NOT NULL DEFAULT 0")
    op.execute(
        "UPDATE rag_collection_sizes s SET lexemes = g.lexemes FROM ("
        "SELECT collection_id, sum(length(tsv)) AS lexemes FROM rag_chunks GROUP BY 1) g "
        "WHERE s.collection_id = g.collection_id"
    )
    op.execute(COUNT_TERMS)
    op.execute(f"DROP FUNCTION {OLD_SIGNATURE}")
    op.execute(KEYWORD_CANDIDATES)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {role}")


def downgrade() -> None:
    role = ident(context.config.attributes["app_role"])
    terms = import_module("mtai.db.migrations.versions.0007_keyword_terms")
    qualified = import_module("mtai.db.migrations.versions.0011_database_roles")._qualified
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute(qualified(terms.KEYWORD_CANDIDATES))
    op.execute(f"REVOKE ALL ON FUNCTION {OLD_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {OLD_SIGNATURE} TO {role}")
    op.execute(qualified(terms.COUNT_TERMS))
    op.execute("ALTER TABLE rag_collection_sizes DROP COLUMN lexemes")
