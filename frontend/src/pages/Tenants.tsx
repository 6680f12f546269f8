// Platform administration of tenants: create, suspend, limits and budgets, allowed models.
import { useState, type FormEvent } from "react";
import { api, get } from "../api";
import { absoluteLink, Dialog, ErrorMessage, PageTitle, Pager, SecretOnce, useAction, useLoad, when, Table } from "../components/common";
import { navigate } from "../router";
import { actIn } from "../session";
import type { CatalogModel, Limits, LimitsView, Page, Tenant, TenantCreated } from "../types";

const PAGE = 25;

function CreateTenant({ onCreated }: { onCreated: () => void }) {
  const [name, setName] = useState("");
  const [slug, setSlug] = useState("");
  const [ownerEmail, setOwnerEmail] = useState("");
  const [created, setCreated] = useState<TenantCreated | null>(null);
  const action = useAction();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void action.run(async () => {
      const body = { name, slug, ...(ownerEmail ? { owner_email: ownerEmail } : {}) };
      setCreated(await api<TenantCreated>("POST", "/api/v1/tenants/", body));
      setName("");
      setSlug("");
      setOwnerEmail("");
      onCreated();
    });
  };
  return (
    <section aria-labelledby="new-tenant">
      <h2 id="new-tenant">New tenant</h2>
      <form className="inline-form" onSubmit={submit}>
        <label>
          Name
          <input required value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <label>
          Slug
          <input required value={slug} pattern="[a-z0-9][a-z0-9\-]{1,62}" title="Lower-case letters, digits and dashes" onChange={(e) => setSlug(e.target.value)} />
        </label>
        <label>
          Owner email (optional)
          <input type="email" value={ownerEmail} onChange={(e) => setOwnerEmail(e.target.value)} />
        </label>
        <button type="submit" className="primary" disabled={action.busy}>
          Create tenant
        </button>
      </form>
      <ErrorMessage error={action.error} />
      {created?.owner_invitation && (
        <SecretOnce
          label={`Invitation link for the owner of ${created.slug}.`}
          secret={
            created.owner_invitation.accept_url
              ? absoluteLink(created.owner_invitation.accept_url)
              : `Mailed to ${created.owner_invitation.email}.`
          }
          onDone={() => setCreated(null)}
        />
      )}
    </section>
  );
}

const LIMIT_FIELDS: { key: keyof Limits; label: string }[] = [
  { key: "rpm", label: "Requests per minute" },
  { key: "tpm", label: "Tokens per minute" },
  { key: "concurrency", label: "Concurrent requests" },
  { key: "monthly_usd", label: "Monthly budget (USD)" },
  { key: "monthly_tokens", label: "Monthly tokens" },
];

function TenantSettings({ tenant, onSaved }: { tenant: Tenant; onSaved: () => void }) {
  const limits = useLoad(() => get<LimitsView>(`/api/v1/tenants/${tenant.id}/limits`), [tenant.id]);
  const models = useLoad(() => get<CatalogModel[]>("/api/v1/admin/models"), []);
  const [draft, setDraft] = useState<Record<string, string>>({});
  const allowed = tenant.settings.allowed_models as string[] | undefined | null;
  const [restrict, setRestrict] = useState(Array.isArray(allowed));
  const [picked, setPicked] = useState<string[]>(allowed ?? []);
  const action = useAction();
  const value = (key: keyof Limits) => draft[key] ?? (limits.data?.limits[key] ?? "").toString();
  const save = (event: FormEvent) => {
    event.preventDefault();
    void action.run(async () => {
      const body: Record<string, number | string> = {};
      for (const { key } of LIMIT_FIELDS) {
        const text = value(key).trim();
        if (text) body[key] = key === "monthly_usd" ? text : Number(text);
      }
      await api("PUT", `/api/v1/tenants/${tenant.id}/limits`, body);
      // PATCH replaces the whole settings object: start from the saved one, limits included.
      const fresh = await get<Tenant>(`/api/v1/tenants/${tenant.id}`);
      const { allowed_models: previous, ...rest } = fresh.settings;
      const next = restrict ? picked : undefined;
      if (JSON.stringify(previous) !== JSON.stringify(next)) {
        await api("PATCH", `/api/v1/tenants/${tenant.id}`, {
          settings: next ? { ...rest, allowed_models: next } : rest,
        });
      }
      onSaved();
    });
  };
  return (
    <form onSubmit={save} className="stack">
      <ErrorMessage error={limits.error ?? models.error} />
      <fieldset>
        <legend>Limits and budget (empty: unlimited)</legend>
        {LIMIT_FIELDS.map(({ key, label }) => (
          <label key={key}>
            {label}
            <input inputMode="decimal" value={value(key)} onChange={(e) => setDraft({ ...draft, [key]: e.target.value })} />
          </label>
        ))}
      </fieldset>
      {limits.data && (
        <p className="muted">Used now: {JSON.stringify(limits.data.consumption)}</p>
      )}
      <fieldset>
        <legend>Models</legend>
        <label className="inline">
          <input type="checkbox" checked={restrict} onChange={(e) => setRestrict(e.target.checked)} />
          Only the models ticked below (otherwise every enabled model)
        </label>
        {restrict &&
          (models.data ?? []).map((m) => (
            <label key={m.name} className="inline">
              <input
                type="checkbox"
                checked={picked.includes(m.name)}
                onChange={(e) => setPicked(e.target.checked ? [...picked, m.name] : picked.filter((n) => n !== m.name))}
              />
              {m.name}
            </label>
          ))}
      </fieldset>
      <ErrorMessage error={action.error} />
      <button type="submit" className="primary" disabled={action.busy}>
        Save
      </button>
    </form>
  );
}

export function Tenants() {
  const [offset, setOffset] = useState(0);
  const tenants = useLoad(() => get<Page<Tenant>>(`/api/v1/tenants/?limit=${PAGE}&offset=${offset}`), [offset]);
  const [editing, setEditing] = useState<Tenant | null>(null);
  const action = useAction();
  const setStatus = (tenant: Tenant, verb: "suspend" | "reactivate") =>
    void action.run(async () => {
      await api("POST", `/api/v1/tenants/${tenant.id}/${verb}`);
      tenants.reload();
    });
  const open = (tenant: Tenant) => {
    actIn({ id: tenant.id, slug: tenant.slug, name: tenant.name, role: "owner" });
    navigate("/users");
  };
  return (
    <>
      <PageTitle>Tenants</PageTitle>
      <CreateTenant onCreated={tenants.reload} />
      <ErrorMessage error={tenants.error ?? action.error} />
      <Table caption="All tenants" columns={["Name", "Slug", "Status", "Created", "Actions"]}>
        {tenants.data?.items.map((t) => (
          <tr key={t.id}>
            <td>{t.name}</td>
            <td className="mono">{t.slug}</td>
            <td>
              <span className={`badge ${t.status}`}>{t.status}</span>
            </td>
            <td>{when(t.created_at)}</td>
            <td className="actions">
              <button type="button" onClick={() => setEditing(t)} aria-label={`Limits and models of ${t.slug}`}>
                Limits and models
              </button>
              {t.status === "active" ? (
                <button type="button" onClick={() => setStatus(t, "suspend")} aria-label={`Suspend ${t.slug}`}>
                  Suspend
                </button>
              ) : (
                <button type="button" onClick={() => setStatus(t, "reactivate")} aria-label={`Reactivate ${t.slug}`}>
                  Reactivate
                </button>
              )}
              <button type="button" onClick={() => open(t)} aria-label={`Manage ${t.slug} as its owner`}>
                Manage
              </button>
            </td>
          </tr>
        ))}
      </Table>
      {tenants.data && <Pager total={tenants.data.total} limit={PAGE} offset={offset} onChange={setOffset} />}
      <Dialog title={editing ? `Tenant ${editing.slug}` : ""} open={!!editing} onClose={() => setEditing(null)}>
        {editing && (
          <TenantSettings
            tenant={editing}
            onSaved={() => {
              setEditing(null);
              tenants.reload();
            }}
          />
        )}
      </Dialog>
    </>
  );
}
