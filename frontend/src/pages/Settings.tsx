// Tenant settings for its admins: single sign-on through the tenant's OpenID Connect provider,
// and the SCIM token its directory pushes users with.
import { useState, type FormEvent } from "react";
import { api, ApiError, get } from "../api";
import { absoluteLink, CopyButton, ErrorMessage, PageTitle, SecretOnce, useAction, useLoad } from "../components/common";
import type { Role, ScimToken, SsoProvider } from "../types";

const ROLES: Role[] = ["member", "admin", "owner"];

interface GroupRow {
  key: number;
  group: string;
  role: Role;
}

// Stable keys for the editable rows, so removing one leaves the others' focus in place.
let rowKey = 0;
const groupRow = (group: string, role: Role): GroupRow => ({ key: ++rowKey, group, role });

interface Draft {
  issuer: string;
  client_id: string;
  client_secret: string;
  scopes: string;
  allowed_domains: string;
  groups_claim: string;
  group_roles: GroupRow[];
  jit_provisioning: boolean;
  enforce_sso: boolean;
  enabled: boolean;
}

function toDraft(p: SsoProvider | null): Draft {
  return {
    issuer: p?.issuer ?? "",
    client_id: p?.client_id ?? "",
    client_secret: "",
    scopes: (p?.scopes ?? ["openid", "email", "profile"]).join(" "),
    allowed_domains: (p?.allowed_domains ?? []).join("\n"),
    groups_claim: p?.groups_claim ?? "",
    group_roles: Object.entries(p?.group_roles ?? {}).map(([group, role]) => groupRow(group, role)),
    jit_provisioning: p?.jit_provisioning ?? false,
    enforce_sso: p?.enforce_sso ?? false,
    enabled: p?.enabled ?? true,
  };
}

const words = (text: string): string[] => text.split(/[\s,]+/).filter(Boolean);

function toBody(d: Draft) {
  return {
    issuer: d.issuer.trim(),
    client_id: d.client_id.trim(),
    // Left out, the stored secret is kept.
    ...(d.client_secret ? { client_secret: d.client_secret } : {}),
    scopes: words(d.scopes),
    allowed_domains: words(d.allowed_domains),
    groups_claim: d.groups_claim.trim() || null,
    group_roles: Object.fromEntries(d.group_roles.filter((r) => r.group.trim()).map((r) => [r.group.trim(), r.role])),
    jit_provisioning: d.jit_provisioning,
    enforce_sso: d.enforce_sso,
    enabled: d.enabled,
  };
}

// No provider yet answers 404: the form starts empty.
function noneIfMissing(error: unknown): null {
  if (error instanceof ApiError && error.status === 404) return null;
  throw error;
}

function ProviderForm({ provider, onSaved }: { provider: SsoProvider | null; onSaved: () => void }) {
  const [d, setD] = useState(() => toDraft(provider));
  const action = useAction();
  const set = <K extends keyof Draft>(key: K, value: Draft[K]) => setD((prev) => ({ ...prev, [key]: value }));
  const setRow = (key: number, change: Partial<GroupRow>) =>
    set("group_roles", d.group_roles.map((r) => (r.key === key ? { ...r, ...change } : r)));
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void action.run(async () => {
      await api("PUT", "/api/v1/sso", toBody(d));
      onSaved();
    });
  };
  return (
    <form className="stack" onSubmit={submit} aria-label="Identity provider">
      <div className="grid-form">
        <label>
          Issuer URL
          <input type="url" required value={d.issuer} placeholder="https://login.example.com/oauth2/default" onChange={(e) => set("issuer", e.target.value)} />
        </label>
        <label>
          Client ID
          <input required autoComplete="off" value={d.client_id} onChange={(e) => set("client_id", e.target.value)} />
        </label>
        <label>
          Client secret ({provider?.has_client_secret ? "stored; leave empty to keep it" : "leave empty for a public client"})
          <input type="password" autoComplete="new-password" value={d.client_secret} onChange={(e) => set("client_secret", e.target.value)} />
        </label>
        <label>
          Scopes (separated by spaces)
          <input value={d.scopes} onChange={(e) => set("scopes", e.target.value)} />
        </label>
      </div>
      <label>
        Allowed email domains (one per line or comma separated; empty: any the provider vouches for)
        <textarea rows={3} value={d.allowed_domains} onChange={(e) => set("allowed_domains", e.target.value)} />
      </label>
      <p className="muted note" data-testid="verified-domains">
        Verified domains: {provider?.verified_domains.length ? provider.verified_domains.join(", ") : "none"}. A platform
        administrator verifies that this organisation owns a domain; only then can its people start single sign-on with
        their email, and join without an invitation (just-in-time).
      </p>
      <fieldset>
        <legend>Roles from groups</legend>
        <label>
          Groups claim of the ID token (optional)
          <input value={d.groups_claim} placeholder="groups" onChange={(e) => set("groups_claim", e.target.value)} />
        </label>
        {d.group_roles.map((r, i) => (
          <div className="row" key={r.key}>
            <input aria-label={`Group ${i + 1}`} placeholder="Group name" value={r.group} onChange={(e) => setRow(r.key, { group: e.target.value })} />
            <select aria-label={`Role of group ${i + 1}`} value={r.role} onChange={(e) => setRow(r.key, { role: e.target.value as Role })}>
              {ROLES.map((role) => (
                <option key={role}>{role}</option>
              ))}
            </select>
            <button type="button" aria-label={`Remove group ${i + 1}`} onClick={() => set("group_roles", d.group_roles.filter((x) => x.key !== r.key))}>
              Remove
            </button>
          </div>
        ))}
        <div>
          <button type="button" onClick={() => set("group_roles", [...d.group_roles, groupRow("", "member")])}>
            Add group
          </button>
        </div>
      </fieldset>
      <div>
        <label className="inline">
          <input type="checkbox" aria-describedby="sso-jit-note" checked={d.jit_provisioning} onChange={(e) => set("jit_provisioning", e.target.checked)} />
          Just-in-time provisioning
        </label>
        <p id="sso-jit-note" className="muted small note">
          People of a verified domain join as members (or their groups&apos; role) at their first sign-in, without an invitation.
        </p>
      </div>
      <div>
        <label className="inline">
          <input type="checkbox" aria-describedby="sso-enforce-note" checked={d.enforce_sso} onChange={(e) => set("enforce_sso", e.target.checked)} />
          Require SSO for members
        </label>
        <p id="sso-enforce-note" className="muted small note">
          Members can no longer log in with a password. Owners keep theirs as a break-glass way in when the provider fails;
          each such login is in the audit log. Only owners change this.
        </p>
      </div>
      <label className="inline">
        <input type="checkbox" checked={d.enabled} onChange={(e) => set("enabled", e.target.checked)} />
        Enabled
      </label>
      <ErrorMessage error={action.error} />
      <div>
        <button type="submit" className="primary" disabled={action.busy}>
          Save single sign-on
        </button>
      </div>
    </form>
  );
}

function Copyable({ label, copyLabel, value }: { label: string; copyLabel: string; value: string }) {
  return (
    <div className="row">
      <label>
        {label}
        <input readOnly className="mono" size={48} value={value} onFocus={(e) => e.target.select()} />
      </label>
      <CopyButton text={value} label={copyLabel} />
    </div>
  );
}

function Scim({ provider, onChanged }: { provider: SsoProvider; onChanged: () => void }) {
  const [issued, setIssued] = useState<ScimToken | null>(null);
  const action = useAction();
  const issue = () => {
    if (provider.has_scim_token && !window.confirm("Replace the SCIM token? The current one stops working at once.")) return;
    void action.run(async () => {
      setIssued(await api<ScimToken>("POST", "/api/v1/sso/scim-token"));
      onChanged();
    });
  };
  const revoke = () => {
    if (!window.confirm("Revoke the SCIM token? Your directory can no longer provision people.")) return;
    void action.run(async () => {
      await api("DELETE", "/api/v1/sso/scim-token");
      onChanged();
    });
  };
  return (
    <section aria-labelledby="scim-title">
      <h2 id="scim-title">User provisioning (SCIM)</h2>
      <p className="muted">
        Your directory can create, update and deactivate this organisation&apos;s people through SCIM 2.0, with this base URL
        and a token. {provider.has_scim_token ? "A SCIM token is active." : "There is no SCIM token."}
      </p>
      <Copyable label="SCIM base URL" copyLabel="Copy the SCIM base URL" value={provider.scim_base_url} />
      {issued && <SecretOnce label="SCIM token." secret={issued.token} onDone={() => setIssued(null)} />}
      <ErrorMessage error={action.error} />
      <div className="row">
        <button type="button" disabled={action.busy} onClick={issue}>
          Generate SCIM token
        </button>
        {provider.has_scim_token && (
          <button type="button" disabled={action.busy} onClick={revoke}>
            Revoke SCIM token
          </button>
        )}
      </div>
    </section>
  );
}

export function Settings() {
  const provider = useLoad(() => get<SsoProvider>("/api/v1/sso").catch(noneIfMissing), []);
  const [notice, setNotice] = useState("");
  const action = useAction();
  const current = provider.data;
  const remove = () => {
    if (!window.confirm("Remove single sign-on, with its SCIM token?")) return;
    void action.run(async () => {
      await api("DELETE", "/api/v1/sso");
      setNotice("Single sign-on is removed.");
      provider.reload();
    });
  };
  return (
    <>
      <PageTitle>Settings</PageTitle>
      <section aria-labelledby="sso-title">
        <h2 id="sso-title">Single sign-on</h2>
        <p className="muted">
          Members sign in through your organisation&apos;s OpenID Connect identity provider. Register mtai there as a web
          application with this redirect URI, then enter the issuer and the client it gives you.
        </p>
        <Copyable
          label="Redirect URI"
          copyLabel="Copy the redirect URI"
          value={current?.redirect_uri ?? absoluteLink("/api/v1/auth/sso/callback")}
        />
        <ErrorMessage error={provider.error} />
        {current !== undefined && (
          <ProviderForm
            key={current?.updated_at ?? "new"}
            provider={current}
            onSaved={() => {
              setNotice("Saved.");
              provider.reload();
            }}
          />
        )}
        {notice && <p role="status">{notice}</p>}
      </section>
      {current && <Scim provider={current} onChanged={provider.reload} />}
      {current && (
        <section aria-labelledby="sso-remove-title">
          <h2 id="sso-remove-title">Remove single sign-on</h2>
          <p className="muted">Nobody signs in through the provider any more; people who have a password use it again.</p>
          <ErrorMessage error={action.error} />
          <button type="button" disabled={action.busy} onClick={remove}>
            Remove provider
          </button>
        </section>
      )}
    </>
  );
}
