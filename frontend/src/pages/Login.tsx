// Email and password, or single sign-on; a user of several tenants then chooses the one to work in.
import { useState, type FormEvent } from "react";
import { ApiError, authPost } from "../api";
import { ErrorMessage } from "../components/common";
import { signIn, takeEndReason } from "../session";
import type { LoginResponse, TenantRef } from "../types";

// The choice a platform administrator has besides their tenants: the platform as a whole.
const PLATFORM = "platform";

function login(email: string, password: string, choice: string | null): Promise<LoginResponse> {
  const headers: Record<string, string> = choice && choice !== PLATFORM ? { "X-Tenant-ID": choice } : {};
  return authPost<LoginResponse>("/api/v1/auth/login", { email, password, platform: choice === PLATFORM }, headers);
}

/** Single sign-on is a navigation, not a fetch: the server sets a cookie and redirects to the
 * organisation's identity provider, named by its slug or by the domain of a work email. */
function startSso(organisationOrEmail: string): void {
  const value = organisationOrEmail.trim();
  const query = new URLSearchParams(value.includes("@") ? { email: value } : { tenant: value });
  window.location.assign(`/api/v1/auth/sso/start?${query.toString()}`);
}

export function Login() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [choices, setChoices] = useState<TenantRef[] | null>(null);
  const [chosen, setChosen] = useState<string>("");
  const [error, setError] = useState<unknown>(() => {
    const reason = takeEndReason();
    return reason ? new Error(reason) : null;
  });
  const [busy, setBusy] = useState(false);
  const [isAdmin, setIsAdmin] = useState(false);
  // Null: the password form; a string: the single sign-on form, with what the person typed.
  const [sso, setSso] = useState<string | null>(null);
  // The tenant that refused the (right) password because it requires SSO: the account may link.
  const [linkable, setLinkable] = useState<string | null>(null);

  const linkWithPassword = async (tenant: string) => {
    setBusy(true);
    setError(null);
    try {
      const started = await authPost<{ authorization_url: string }>("/api/v1/auth/sso/link-password", { tenant, email, password });
      window.location.assign(started.authorization_url);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const result = await login(email, password, choices ? chosen : null);
      const { tenants, is_platform_admin: admin } = result.user;
      setIsAdmin(admin);
      if (!choices && (tenants.length > 1 || (admin && tenants.length > 0))) {
        setChoices(tenants);
        setChosen(admin ? PLATFORM : result.user.tenant?.id ?? tenants[0].id);
      } else {
        signIn(result);
      }
    } catch (err) {
      setError(err);
      if (err instanceof ApiError && err.code === "sso_required") {
        const tenant = typeof err.fields.tenant === "string" ? err.fields.tenant : null;
        setSso(tenant ?? choices?.find((t) => t.id === chosen)?.slug ?? email);
        setLinkable(tenant);
      }
    } finally {
      setBusy(false);
    }
  };

  if (sso !== null) {
    return (
      <main className="login" id="main">
        <form onSubmit={(e) => { e.preventDefault(); startSso(sso); }} aria-labelledby="sso-title">
          <h1 id="sso-title">Sign in with SSO</h1>
          <ErrorMessage error={error} />
          <label>
            Organisation or work email
            <input required autoFocus autoComplete="username" aria-describedby="sso-hint" value={sso} onChange={(e) => setSso(e.target.value)} />
          </label>
          <p id="sso-hint" className="muted small note">
            Your organisation&apos;s short name (its slug; your administrator knows it), or your work email address.
          </p>
          <button type="submit" className="primary">
            Continue with SSO
          </button>
          {linkable && (
            <button type="button" disabled={busy} aria-describedby="link-hint" onClick={() => void linkWithPassword(linkable)}>
              Link SSO with my password
            </button>
          )}
          {linkable && (
            <p id="link-hint" className="muted small note">
              First time through SSO? Your password proves this account; you then sign in at your organisation&apos;s provider once to link them.
            </p>
          )}
          <button type="button" onClick={() => { setSso(null); setLinkable(null); setError(null); }}>
            Log in with a password
          </button>
        </form>
      </main>
    );
  }

  return (
    <main className="login" id="main">
      <form onSubmit={(e) => void submit(e)} aria-labelledby="login-title">
        <h1 id="login-title">Log in to mtai</h1>
        <ErrorMessage error={error} />
        <label>
          Email
          <input type="email" autoComplete="username" required value={email} disabled={!!choices} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Password
          <input type="password" autoComplete="current-password" required value={password} disabled={!!choices} onChange={(e) => setPassword(e.target.value)} />
        </label>
        {choices && (
          <fieldset>
            <legend>Organisation</legend>
            {isAdmin && (
              <label className="inline">
                <input type="radio" name="tenant" value={PLATFORM} checked={chosen === PLATFORM} onChange={() => setChosen(PLATFORM)} />
                Platform administration
              </label>
            )}
            {choices.map((t) => (
              <label key={t.id} className="inline">
                <input type="radio" name="tenant" value={t.id} checked={chosen === t.id} onChange={() => setChosen(t.id)} />
                {t.name} <span className="muted">({t.slug}, {t.role})</span>
              </label>
            ))}
          </fieldset>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {choices ? "Continue" : "Log in"}
        </button>
        <button type="button" onClick={() => { setSso(""); setError(null); }}>
          Sign in with SSO
        </button>
      </form>
    </main>
  );
}
