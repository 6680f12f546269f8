// The platform's model catalog: providers, upstream names, prices, enabled or not.
import { useState, type FormEvent } from "react";
import { api, get } from "../api";
import { Dialog, ErrorMessage, PageTitle, useAction, useLoad, Table } from "../components/common";
import type { CatalogModel } from "../types";

const PROVIDERS = ["openai", "anthropic", "bedrock", "local", "extractive"];

type Draft = Omit<CatalogModel, "has_api_key" | "fallbacks"> & { api_key: string; fallbacks: string };

const blank: Draft = {
  name: "",
  provider: "openai",
  upstream_model: "",
  base_url: "",
  region: "",
  api_key: "",
  context_window: 8192,
  max_output_tokens: 1024,
  input_price_per_1m: "0",
  output_price_per_1m: "0",
  timeout_seconds: 60,
  max_retries: 2,
  fallbacks: "",
  enabled: true,
};

function toDraft(m: CatalogModel): Draft {
  return { ...m, base_url: m.base_url ?? "", region: m.region ?? "", api_key: "", fallbacks: m.fallbacks.join(", ") };
}

function ModelForm({ initial, isNew, onSaved }: { initial: Draft; isNew: boolean; onSaved: () => void }) {
  const [d, setD] = useState(initial);
  const action = useAction();
  const set = <K extends keyof Draft>(key: K, value: Draft[K]) => setD({ ...d, [key]: value });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void action.run(async () => {
      const body = {
        ...d,
        base_url: d.base_url || null,
        region: d.region || null,
        api_key: d.api_key || null,
        fallbacks: d.fallbacks.split(",").map((f) => f.trim()).filter(Boolean),
      };
      await api("PUT", `/api/v1/admin/models/${encodeURIComponent(d.name)}`, body);
      onSaved();
    });
  };
  return (
    <form onSubmit={submit} className="grid-form">
      <label>
        Name
        <input required value={d.name} readOnly={!isNew} onChange={(e) => set("name", e.target.value)} />
      </label>
      <label>
        Provider
        <select value={d.provider} onChange={(e) => set("provider", e.target.value)}>
          {PROVIDERS.map((p) => (
            <option key={p}>{p}</option>
          ))}
        </select>
      </label>
      <label>
        Upstream model
        <input required value={d.upstream_model} onChange={(e) => set("upstream_model", e.target.value)} />
      </label>
      <label>
        Base URL
        <input value={d.base_url ?? ""} placeholder="https://…/v1" onChange={(e) => set("base_url", e.target.value)} />
      </label>
      <label>
        Region (Bedrock)
        <input value={d.region ?? ""} onChange={(e) => set("region", e.target.value)} />
      </label>
      <label>
        API key {isNew ? "" : "(empty: keep the current one)"}
        <input type="password" autoComplete="off" value={d.api_key} onChange={(e) => set("api_key", e.target.value)} />
      </label>
      <label>
        Context window
        <input type="number" min={1} required value={d.context_window} onChange={(e) => set("context_window", Number(e.target.value))} />
      </label>
      <label>
        Max output tokens
        <input type="number" min={1} required value={d.max_output_tokens} onChange={(e) => set("max_output_tokens", Number(e.target.value))} />
      </label>
      <label>
        Input price per 1M tokens (USD)
        <input inputMode="decimal" required value={d.input_price_per_1m} onChange={(e) => set("input_price_per_1m", e.target.value)} />
      </label>
      <label>
        Output price per 1M tokens (USD)
        <input inputMode="decimal" required value={d.output_price_per_1m} onChange={(e) => set("output_price_per_1m", e.target.value)} />
      </label>
      <label>
        Timeout (s)
        <input type="number" min={1} value={d.timeout_seconds} onChange={(e) => set("timeout_seconds", Number(e.target.value))} />
      </label>
      <label>
        Retries
        <input type="number" min={0} max={10} value={d.max_retries} onChange={(e) => set("max_retries", Number(e.target.value))} />
      </label>
      <label>
        Fallbacks (comma-separated)
        <input value={d.fallbacks} onChange={(e) => set("fallbacks", e.target.value)} />
      </label>
      <label className="inline">
        <input type="checkbox" checked={d.enabled} onChange={(e) => set("enabled", e.target.checked)} />
        Enabled
      </label>
      <ErrorMessage error={action.error} />
      <button type="submit" className="primary" disabled={action.busy}>
        Save model
      </button>
    </form>
  );
}

export function Models() {
  const models = useLoad(() => get<CatalogModel[]>("/api/v1/admin/models"), []);
  const [editing, setEditing] = useState<{ draft: Draft; isNew: boolean } | null>(null);
  const action = useAction();
  const remove = (name: string) => {
    if (!window.confirm(`Delete the model ${name}? Requests naming it will fail.`)) return;
    void action.run(async () => {
      await api("DELETE", `/api/v1/admin/models/${encodeURIComponent(name)}`);
      models.reload();
    });
  };
  return (
    <>
      <PageTitle
        actions={
          <button type="button" className="primary" onClick={() => setEditing({ draft: blank, isNew: true })}>
            Add model
          </button>
        }
      >
    Models and prices
  </PageTitle>
  <ErrorMessage error={models.error ?? action.error} />
  <Table caption="The catalog every tenant chooses from" columns={["Name", "Provider", "Upstream", "Input $/1M", "Output $/1M", "Enabled", "Actions"]}>
        {models.data?.map((m) => (
          <tr key={m.name}>
            <td className="mono">{m.name}</td>
            <td>{m.provider}</td>
            <td className="mono">{m.upstream_model}</td>
            <td>{m.input_price_per_1m}</td>
            <td>{m.output_price_per_1m}</td>
            <td>{m.enabled ? "yes" : "no"}</td>
            <td className="actions">
              <button type="button" onClick={() => setEditing({ draft: toDraft(m), isNew: false })} aria-label={`Edit ${m.name}`}>
                Edit
              </button>
              <button type="button" onClick={() => remove(m.name)} aria-label={`Delete ${m.name}`}>
                Delete
              </button>
            </td>
          </tr>
        ))}
      </Table>
      <Dialog title={editing?.isNew ? "Add model" : `Edit ${editing?.draft.name ?? ""}`} open={!!editing} onClose={() => setEditing(null)}>
        {editing && (
          <ModelForm
            initial={editing.draft}
            isNew={editing.isNew}
            onSaved={() => {
              setEditing(null);
              models.reload();
            }}
          />
        )}
      </Dialog>
    </>
  );
}
