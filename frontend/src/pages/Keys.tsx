// API keys of the tenant: create (the secret is shown once), rotate, revoke, delete.
import { useState, type FormEvent } from "react";
import { api, get } from "../api";
import { ErrorMessage, PageTitle, Pager, SecretOnce, useAction, useLoad, when, Table } from "../components/common";
import type { ApiKey, ApiKeyCreated, Page } from "../types";

const SCOPES = ["chat", "rag:read", "rag:write", "admin"];
const PAGE = 50;

function state(key: ApiKey): string {
  if (key.revoked_at) return "revoked";
  if (key.expires_at && new Date(key.expires_at) < new Date()) return "expired";
  return "active";
}

export function Keys() {
  const [offset, setOffset] = useState(0);
  const keys = useLoad(() => get<Page<ApiKey>>(`/api/v1/keys?limit=${PAGE}&offset=${offset}`), [offset]);
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<string[]>(["chat", "rag:read"]);
  const [secret, setSecret] = useState<ApiKeyCreated | null>(null);
  const action = useAction();
  const create = (event: FormEvent) => {
    event.preventDefault();
    void action.run(async () => {
      setSecret(await api<ApiKeyCreated>("POST", "/api/v1/keys", { name, scopes }));
      setName("");
      keys.reload();
    });
  };
  const act = (key: ApiKey, verb: "revoke" | "rotate") => {
    const question =
      verb === "revoke"
        ? `Revoke ${key.name}? Every client using it is refused from now on.`
        : `Rotate ${key.name}? The old secret keeps working for the grace period.`;
    if (!window.confirm(question)) return;
    void action.run(async () => {
      const result = await api<ApiKeyCreated | ApiKey>("POST", `/api/v1/keys/${key.id}/${verb}`);
      if ("key" in result) setSecret(result);
      keys.reload();
    });
  };
  return (
    <>
      <PageTitle>API keys</PageTitle>
      <form className="inline-form" onSubmit={create} aria-label="Create an API key">
        <label>
          Name
          <input required value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <fieldset className="inline">
          <legend>Scopes</legend>
          {SCOPES.map((s) => (
            <label key={s} className="inline">
              <input
                type="checkbox"
                checked={scopes.includes(s)}
                onChange={(e) => setScopes(e.target.checked ? [...scopes, s] : scopes.filter((x) => x !== s))}
              />
              {s}
            </label>
          ))}
        </fieldset>
        <button type="submit" className="primary" disabled={action.busy}>
          Create key
        </button>
      </form>
      {secret && <SecretOnce label={`Secret of the key ${secret.name}.`} secret={secret.key} onDone={() => setSecret(null)} />}
      <ErrorMessage error={keys.error ?? action.error} />
      <Table caption="Keys of this tenant" columns={["Name", "Prefix", "Scopes", "State", "Last used", "Actions"]}>
        {keys.data?.items.map((k) => (
          <tr key={k.id} data-key-name={k.name}>
            <td>{k.name}</td>
            <td className="mono">{k.prefix}…</td>
            <td>{k.scopes.join(", ")}</td>
            <td>
              <span className={`badge ${state(k)}`}>{state(k)}</span>
            </td>
            <td>{when(k.last_used_at)}</td>
            <td className="actions">
              {!k.revoked_at && (
                <>
                  <button type="button" onClick={() => act(k, "rotate")} aria-label={`Rotate ${k.name}`}>
                    Rotate
                  </button>
                  <button type="button" onClick={() => act(k, "revoke")} aria-label={`Revoke ${k.name}`}>
                    Revoke
                  </button>
                </>
              )}
            </td>
          </tr>
        ))}
      </Table>
      {keys.data && <Pager total={keys.data.total} limit={PAGE} offset={offset} onChange={setOffset} />}
    </>
  );
}
