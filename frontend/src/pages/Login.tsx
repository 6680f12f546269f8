// Email and password; a user of several tenants then chooses the one to work in.
import { useState, type FormEvent } from "react";
import { ApiError, errorFrom } from "../api";
import { ErrorMessage } from "../components/common";
import { navigate } from "../router";
import { startSession, takeEndReason } from "../session";
import type { LoginResponse, TenantRef } from "../types";

// The choice a platform administrator has besides their tenants: the platform as a whole.
const PLATFORM = "platform";

async function login(email: string, password: string, choice: string | null): Promise<LoginResponse> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (choice && choice !== PLATFORM) headers["X-Tenant-ID"] = choice;
  const platform = choice === PLATFORM;
  let response: Response;
  try {
    response = await fetch("/api/v1/auth/login", { method: "POST", headers, body: JSON.stringify({ email, password, platform }) });
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check that mtai is running.", "offline", null);
  }
  if (!response.ok) throw await errorFrom(response);
  return (await response.json()) as LoginResponse;
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

  const finish = (result: LoginResponse) => {
    startSession({
      token: result.access_token,
      expiresAt: Date.now() + result.expires_in * 1000,
      user: result.user,
      actingTenant: null,
    });
    navigate(result.user.tenant ? "/chat" : "/tenants");
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
        finish(result);
      }
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

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
      </form>
    </main>
  );
}
