// Accepting an invitation (/ui/accept#token=...): a new person chooses a password, someone with an
// account logs in and accepts. The token stays in the URL fragment, which browsers never send.
import { useEffect, useState, type FormEvent } from "react";
import { authPost } from "../api";
import { ErrorMessage, when } from "../components/common";
import { navigate } from "../router";
import { currentSession, signIn } from "../session";
import type { InvitationLookup, LoginResponse } from "../types";

function tokenFromUrl(): string {
  return new URLSearchParams(window.location.hash.replace(/^#/, "")).get("token") ?? "";
}

const post = <T,>(path: string, body: unknown, bearer?: string): Promise<T> =>
  authPost<T>(path, body, bearer ? { Authorization: `Bearer ${bearer}` } : {});

function begin(result: LoginResponse): void {
  window.history.replaceState(null, "", "/ui/");
  signIn(result);
}

export function Accept() {
  const [token] = useState(tokenFromUrl);
  const [invitation, setInvitation] = useState<InvitationLookup | null>(null);
  const [error, setError] = useState<unknown>(token ? null : new Error("This link has no invitation token: open the whole link you received."));
  const [busy, setBusy] = useState(false);
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [existingPassword, setExistingPassword] = useState("");
  const session = currentSession();

  useEffect(() => {
    if (!token) return;
    post<InvitationLookup>("/api/v1/invitations/lookup", { token }).then(setInvitation, setError);
  }, [token]);

  const run = async (work: () => Promise<LoginResponse>) => {
    setBusy(true);
    setError(null);
    try {
      begin(await work());
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const createAccount = (event: FormEvent) => {
    event.preventDefault();
    if (password !== again) {
      setError(new Error("The two passwords differ."));
      return;
    }
    void run(() => post<LoginResponse>("/api/v1/invitations/accept", { token, password, display_name: displayName }));
  };

  const logInAndAccept = (event: FormEvent) => {
    event.preventDefault();
    if (!invitation) return;
    void run(async () => {
      const login = await post<LoginResponse>("/api/v1/auth/login", { email: invitation.email, password: existingPassword });
      return post<LoginResponse>("/api/v1/invitations/accept", { token }, login.access_token);
    });
  };

  const acceptAsCurrent = () => {
    if (!session) return;
    void run(() => post<LoginResponse>("/api/v1/invitations/accept", { token }, session.token));
  };

  const what = invitation?.tenant
    ? `${invitation.tenant.name} (${invitation.tenant.slug}) as ${invitation.role ?? "member"}`
    : "the platform as an administrator";
  const signedInAsInvitee = !!session && !!invitation && session.user.email === invitation.email;

  return (
    <main className="login" id="main">
      <div className="stack">
        <h1 id="accept-title">Accept an invitation</h1>
        <ErrorMessage error={error} />
        {invitation && (
          <>
            <p data-testid="invitation">
              <strong>{invitation.email}</strong> is invited to join <strong>{what}</strong>. The invitation expires{" "}
              {when(invitation.expires_at)}.
            </p>
            {signedInAsInvitee ? (
              <button type="button" className="primary" disabled={busy} onClick={acceptAsCurrent}>
                Accept as {invitation.email}
              </button>
            ) : (
              <>
                <form onSubmit={createAccount} aria-labelledby="new-here">
                  <h2 id="new-here">New here: choose a password</h2>
                  <label>
                    Your name (optional)
                    <input autoComplete="name" value={displayName} onChange={(e) => setDisplayName(e.target.value)} />
                  </label>
                  <label>
                    New password (12 characters or more)
                    <input type="password" autoComplete="new-password" required minLength={12} value={password} onChange={(e) => setPassword(e.target.value)} />
                  </label>
                  <label>
                    New password again
                    <input type="password" autoComplete="new-password" required value={again} onChange={(e) => setAgain(e.target.value)} />
                  </label>
                  <button type="submit" className="primary" disabled={busy}>
                    Create my account and accept
                  </button>
                </form>
                <form onSubmit={logInAndAccept} aria-labelledby="have-account">
                  <h2 id="have-account">I have an account: log in and accept</h2>
                  <label>
                    Password of {invitation.email}
                    <input type="password" autoComplete="current-password" required value={existingPassword} onChange={(e) => setExistingPassword(e.target.value)} />
                  </label>
                  <button type="submit" disabled={busy}>
                    Log in and accept
                  </button>
                </form>
              </>
            )}
          </>
        )}
        <p>
          <a href="/ui/" onClick={(e) => { e.preventDefault(); window.history.replaceState(null, "", "/ui/"); navigate("/"); }}>
            Back to the login page
          </a>
        </p>
      </div>
    </main>
  );
}
