// Knowledge bases and their documents: upload with progress, live ingestion status, delete.
import { useEffect, useRef, useState, type FormEvent } from "react";
import { api, get, upload } from "../api";
import { ErrorMessage, PageTitle, Pager, bytes, useAction, useLoad, when, Table } from "../components/common";
import type { Collection, CollectionUpdated, DocumentInfo, EmbeddingModel, Page, Upload } from "../types";

const PAGE = 50;
const POLL_MS = 1500;
const ACCEPT = ".pdf,.docx,.html,.htm,.md,.markdown,.txt,.csv,.json";
// PostgreSQL's text search configurations, as the API accepts them (knowledge_bases.LANGUAGES).
const LANGUAGES = [
  "simple", "arabic", "danish", "dutch", "english", "finnish", "french", "german", "greek",
  "hungarian", "indonesian", "irish", "italian", "lithuanian", "nepali", "norwegian",
  "portuguese", "romanian", "russian", "spanish", "swedish", "tamil", "turkish",
];

function Collections({ selected, onSelect, version }: { selected: string; onSelect: (id: string) => void; version: number }) {
  // `version` changes after an upload, which may have created the 'default' knowledge base.
  const collections = useLoad(() => get<Page<Collection>>("/api/v1/rag/collections?limit=200"), [version]);
  const [name, setName] = useState("");
  const action = useAction();
  const create = (event: FormEvent) => {
    event.preventDefault();
    void action.run(async () => {
      const made = await api<Collection>("POST", "/api/v1/rag/collections", { name });
      setName("");
      collections.reload();
      onSelect(made.id);
    });
  };
  const remove = (c: Collection) => {
    if (!window.confirm(`Delete the knowledge base ${c.name} and all its documents?`)) return;
    void action.run(async () => {
      await api("DELETE", `/api/v1/rag/collections/${c.id}`);
      if (selected === c.id) onSelect("");
      collections.reload();
    });
  };
  return (
    <section aria-labelledby="kb-title">
      <h2 id="kb-title">Choose a knowledge base</h2>
      <ErrorMessage error={collections.error ?? action.error} />
      <ul className="chips">
        <li>
          <button type="button" aria-pressed={selected === ""} onClick={() => onSelect("")}>
            All
          </button>
        </li>
        {collections.data?.items.map((c) => (
          <li key={c.id}>
            <button type="button" aria-pressed={selected === c.id} onClick={() => onSelect(c.id)} title={`${c.embedding_model}, ${c.embedding_dim} dimensions`}>
              {c.name}
            </button>
            <button type="button" className="link" onClick={() => remove(c)} aria-label={`Delete knowledge base ${c.name}`}>
              ×
            </button>
          </li>
        ))}
      </ul>
      <form className="inline-form" onSubmit={create} aria-label="Create a knowledge base">
          <label>
            New knowledge base
            <input required value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <button type="submit" disabled={action.busy}>
            Create
          </button>
      </form>
    </section>
  );
}

// How one knowledge base searches: its embedding model, language, hybrid weights and reranking.
function KnowledgeBaseSettings({ id, onSaved }: { id: string; onSaved: () => void }) {
  const base = useLoad(() => get<Collection>(`/api/v1/rag/collections/${id}`), [id]);
  const models = useLoad(() => get<EmbeddingModel[]>("/api/v1/rag/embedding-models"), []);
  const [model, setModel] = useState("");
  const [language, setLanguage] = useState("");
  const [rerank, setRerank] = useState(false);
  const [own, setOwn] = useState(false);
  const [vector, setVector] = useState("0.6");
  const [keyword, setKeyword] = useState("0.4");
  const [notice, setNotice] = useState("");
  const action = useAction();
  const loaded = base.data;
  useEffect(() => {
    if (!loaded) return;
    setModel(loaded.embedding_model);
    setLanguage(loaded.language);
    setRerank(loaded.rerank);
    setOwn(loaded.weights !== null);
    if (loaded.weights) {
      setVector(String(loaded.weights.vector));
      setKeyword(String(loaded.weights.keyword));
    }
  }, [loaded]);
  if (!loaded) return <ErrorMessage error={base.error} />;
  const save = (event: FormEvent) => {
    event.preventDefault();
    const changes: Record<string, unknown> = { language, rerank, weights: own ? { vector: Number(vector), keyword: Number(keyword) } : null };
    if (model !== loaded.embedding_model) {
      if (!window.confirm(`Re-embed every document of ${loaded.name} with ${model}? Search uses the old vectors until each document is done.`)) return;
      changes.embedding_model = model;
    }
    void action.run(async () => {
      const saved = await api<CollectionUpdated>("PATCH", `/api/v1/rag/collections/${id}`, changes);
      setNotice(saved.reembedding ? `Saved; re-embedding ${saved.reembedding} documents.` : "Saved.");
      base.reload();
      onSaved();
    });
  };
  return (
    <form className="grid-form settings-form" onSubmit={save} aria-label={`Settings of ${loaded.name}`}>
      <h3>Settings of {loaded.name}</h3>
      <label>
        Embedding model
        <select value={model} onChange={(e) => setModel(e.target.value)}>
          {(models.data ?? [{ name: loaded.embedding_model, dimension: loaded.embedding_dim, max_tokens: 0, is_default: false }]).map((m) => (
            <option key={m.name} value={m.name}>
              {m.name} ({m.dimension} dimensions{m.is_default ? ", default" : ""})
            </option>
          ))}
        </select>
      </label>
      <label>
        Language of keyword search
        <select value={language} onChange={(e) => setLanguage(e.target.value)}>
          {LANGUAGES.map((l) => (
            <option key={l} value={l}>
              {l === "simple" ? "simple (mixed content: no stemming)" : l}
            </option>
          ))}
        </select>
      </label>
      <label className="inline">
        <input type="checkbox" checked={rerank} onChange={(e) => setRerank(e.target.checked)} />
        Rerank the best passages (needs the platform&apos;s reranker)
      </label>
      <fieldset>
        <legend>Hybrid search weights</legend>
        <label className="inline">
          <input type="checkbox" checked={own} onChange={(e) => setOwn(e.target.checked)} />
          Weights of its own (otherwise the platform&apos;s)
        </label>
        <label>
          Vector
          <input type="number" min={0} max={100} step="any" required disabled={!own} value={vector} onChange={(e) => setVector(e.target.value)} />
        </label>
        <label>
          Keyword
          <input type="number" min={0} max={100} step="any" required disabled={!own} value={keyword} onChange={(e) => setKeyword(e.target.value)} />
        </label>
      </fieldset>
      <button type="submit" disabled={action.busy}>
        Save settings
      </button>
      {notice && <p role="status">{notice}</p>}
      <ErrorMessage error={action.error} />
    </form>
  );
}

function UploadForm({ collection, onUploaded }: { collection: string; onUploaded: () => void }) {
  const input = useRef<HTMLInputElement>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const [notice, setNotice] = useState("");
  const action = useAction();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const files = Array.from(input.current?.files ?? []);
    if (!files.length) return;
    void action.run(async () => {
      setNotice("");
      for (const file of files) {
        const form = new FormData();
        form.append("file", file);
        if (collection) form.append("collection", collection);
        setProgress(0);
        const result = await upload<Upload>("/api/v1/rag/documents", form, setProgress);
        if (result.duplicate) setNotice(`${file.name} is already in this knowledge base.`);
        onUploaded();
      }
      setProgress(null);
      if (input.current) input.current.value = "";
    });
  };
  return (
    <form className="inline-form" onSubmit={submit} aria-label="Upload documents">
      <label>
        Documents (PDF, DOCX, HTML, Markdown, text)
        <input ref={input} type="file" multiple accept={ACCEPT} required />
      </label>
      <button type="submit" className="primary" disabled={action.busy}>
        Upload
      </button>
      {progress !== null && (
        <progress max={1} value={progress} aria-label="Upload progress">
          {Math.round(progress * 100)}%
        </progress>
      )}
      {notice && <p role="status">{notice}</p>}
      <ErrorMessage error={action.error} />
    </form>
  );
}

function Status({ doc }: { doc: DocumentInfo }) {
  if (doc.status === "processing") {
    return (
      <span className="badge processing">
        processing <progress max={1} value={doc.progress} aria-label={`Progress of ${doc.title}`} />
      </span>
    );
  }
  return (
    <span className={`badge ${doc.status}`} title={doc.error ?? undefined}>
      {doc.status}
    </span>
  );
}

// Every role may read and add documents (members hold rag:read and rag:write).
export function Knowledge() {
  const [collection, setCollection] = useState("");
  const [offset, setOffset] = useState(0);
  const query = `limit=${PAGE}&offset=${offset}${collection ? `&collection_id=${collection}` : ""}`;
  const docs = useLoad(() => get<Page<DocumentInfo>>(`/api/v1/rag/documents?${query}`), [query]);
  const [uploads, setUploads] = useState(0);
  const action = useAction();
  const busy = docs.data?.items.some((d) => d.status === "queued" || d.status === "processing");
  const { reload } = docs;
  useEffect(() => {
    if (!busy) return;
    const timer = window.setInterval(reload, POLL_MS);
    return () => window.clearInterval(timer);
  }, [busy, reload]);
  const remove = (doc: DocumentInfo) => {
    if (!window.confirm(`Delete ${doc.title}? Its passages leave search at once.`)) return;
    void action.run(async () => {
      await api("DELETE", `/api/v1/rag/documents/${doc.id}`);
      reload();
    });
  };
  return (
    <>
      <PageTitle>Knowledge bases</PageTitle>
      <Collections selected={collection} onSelect={(id) => { setCollection(id); setOffset(0); }} version={uploads} />
      <section aria-labelledby="docs-title">
        <h2 id="docs-title">Documents</h2>
        {collection && <KnowledgeBaseSettings id={collection} onSaved={reload} />}
        <UploadForm collection={collection} onUploaded={() => { reload(); setUploads((n) => n + 1); }} />
        <ErrorMessage error={docs.error ?? action.error} />
        <Table caption="Documents" columns={["Title", "Type", "Size", "Status", "Passages", "Uploaded", "Actions"]} captionHidden>
          {docs.data?.items.map((d) => (
            <tr key={d.id} data-document={d.title}>
              <td>
                {d.title}
                {d.error && <div className="error small">{d.error}</div>}
              </td>
              <td>{d.kind ?? "—"}</td>
              <td>{bytes(d.size_bytes)}</td>
              <td aria-live="polite">
                <Status doc={d} />
              </td>
              <td>{d.chunk_count}</td>
              <td>{when(d.created_at)}</td>
              <td className="actions">
                <button type="button" onClick={() => remove(d)} aria-label={`Delete ${d.title}`}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </Table>
        {docs.data && docs.data.items.length === 0 && <p className="muted">No documents yet.</p>}
        {docs.data && <Pager total={docs.data.total} limit={PAGE} offset={offset} onChange={setOffset} />}
      </section>
    </>
  );
}
