// The retrieval inspector: search a knowledge base (or all) and see why each passage ranks
// where it does: its place in the vector and the keyword list, the fusion and the reranker.
// Chat's sources link here with the question and the cited passage (?q=...&chunk=...).
import { useEffect, useState, type FormEvent } from "react";
import { api, get } from "../api";
import { ErrorMessage, PageTitle, Table, useAction, useLoad } from "../components/common";
import type { Collection, Page, SearchHit, SearchResponse } from "../types";

type Mode = "hybrid" | "vector" | "keyword";

function params(): URLSearchParams {
  return new URLSearchParams(window.location.search);
}

const score = (value: number | null | undefined, digits = 3): string =>
  value === null || value === undefined ? "—" : value.toFixed(digits);

function place(list: { rank: number; score: number } | null): string {
  return list ? `#${list.rank} · ${score(list.score)}` : "not found";
}

function HitRow({ hit, rank, highlighted }: { hit: SearchHit; rank: number; highlighted: boolean }) {
  const why = hit.explain;
  return (
    <tr data-chunk={hit.chunk_id} aria-current={highlighted ? "true" : undefined} className={highlighted ? "highlight" : undefined}>
      <td>{rank}</td>
      <td>
        <strong>{hit.title}</strong>
        {hit.heading ? ` › ${hit.heading}` : ""}
        {hit.page ? ` · page ${hit.page}` : ""}
        <div className="small muted">{hit.text.length > 280 ? `${hit.text.slice(0, 280)}…` : hit.text}</div>
      </td>
      <td>{place(why?.vector ?? null)}</td>
      <td>{place(why?.keyword ?? null)}</td>
      <td>{score(why?.fused_score)}</td>
      <td>{score(why?.rerank_score)}</td>
    </tr>
  );
}

export function Search() {
  const initial = params();
  const collections = useLoad(() => get<Page<Collection>>("/api/v1/rag/collections?limit=200"), []);
  const [query, setQuery] = useState(initial.get("q") ?? "");
  const [collection, setCollection] = useState(initial.get("kb") ?? "");
  const [mode, setMode] = useState<Mode>("hybrid");
  const [rerank, setRerank] = useState<"default" | "on" | "off">("default");
  const [found, setFound] = useState<SearchResponse | null>(null);
  const wanted = initial.get("chunk");
  const action = useAction();

  const search = (text: string) =>
    void action.run(async () => {
      const body: Record<string, unknown> = { query: text, mode, limit: 20, explain: true };
      if (collection) body.collection_ids = [collection];
      if (rerank !== "default") body.rerank = rerank === "on";
      setFound(await api<SearchResponse>("POST", "/api/v1/rag/search", body));
    });

  useEffect(() => {
    // Opened from a chat source: run the question once, as the page opens.
    if (initial.get("q")) search(initial.get("q") ?? "");
  }, []);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (query.trim()) search(query);
  };
  const results = found?.results ?? [];
  const missing = wanted && found && !results.some((h) => h.chunk_id === wanted);
  return (
    <>
      <PageTitle>Search and explain</PageTitle>
      <p className="muted">
        Each result shows its rank and score in the vector list (cosine similarity) and the keyword list (ts_rank or BM25), the fused score, and
        the reranker's score when the knowledge base reranks.
      </p>
      <form className="inline-form" onSubmit={submit} aria-label="Search the knowledge bases">
        <label>
          Query
          <input type="search" required value={query} onChange={(e) => setQuery(e.target.value)} />
        </label>
        <label>
          Knowledge base
          <select value={collection} onChange={(e) => setCollection(e.target.value)}>
            <option value="">All</option>
            {collections.data?.items.map((c) => (
              <option key={c.id} value={c.id}>
                {c.name} ({c.language})
              </option>
            ))}
          </select>
        </label>
        <label>
          Mode
          <select value={mode} onChange={(e) => setMode(e.target.value as Mode)}>
            <option value="hybrid">hybrid</option>
            <option value="vector">vector</option>
            <option value="keyword">keyword</option>
          </select>
        </label>
        <label>
          Rerank
          <select value={rerank} onChange={(e) => setRerank(e.target.value as "default" | "on" | "off")}>
            <option value="default">as the knowledge base says</option>
            <option value="on">on</option>
            <option value="off">off</option>
          </select>
        </label>
        <button type="submit" className="primary" disabled={action.busy}>
          Search
        </button>
      </form>
      <ErrorMessage error={collections.error ?? action.error} />
      {missing && (
        <p role="status" className="error">
          The cited passage is not among these results any more: its document may have changed since the answer.
        </p>
      )}
      {found && (
        <Table caption="Results, best first" columns={["#", "Passage", "Vector (rank · similarity)", "Keyword (rank · score)", "Fused", "Reranker"]}>
          {results.map((hit, i) => (
            <HitRow key={hit.chunk_id} hit={hit} rank={i + 1} highlighted={hit.chunk_id === wanted} />
          ))}
        </Table>
      )}
      {found && results.length === 0 && <p className="muted">Nothing matched. Try other words, or the vector mode.</p>}
      {found?.results[0]?.explain?.fusion && (
        <p className="small muted">
          Fusion: {found.results[0].explain.fusion.method}, vector {found.results[0].explain.fusion.vector} : keyword{" "}
          {found.results[0].explain.fusion.keyword}
        </p>
      )}
    </>
  );
}
