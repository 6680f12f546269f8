// Where single sign-on ends (/ui/sso): the server sends the browser here with a sealed hand-off
// cookie, traded for a session or for the error that ended the sign-in. Nothing is read from
// the URL, where anyone could write a message for this page to show.
import { useEffect, useRef, useState } from "react";
import { authPost } from "../api";
import { ErrorMessage } from "../components/common";
import { Link } from "../router";
import { currentSession, signIn } from "../session";
import type { LoginResponse } from "../types";

export function SsoReturn() {
  const [error, setError] = useState<unknown>(null);
  // The hand-off cookie works once; StrictMode runs effects twice in development.
  const exchanged = useRef(false);

  useEffect(() => {
    if (error || exchanged.current) return;
    exchanged.current = true;
    authPost<LoginResponse>("/api/v1/auth/sso/exchange").then((result) => {
      window.history.replaceState(null, "", "/ui/");
      signIn(result);
    }, setError);
  }, [error]);

  return (
    <main className="login" id="main">
      <div className="stack">
        <h1>Single sign-on</h1>
        {error ? (
          <>
            <ErrorMessage error={error} />
            <p>
              <Link to="/">{currentSession() ? "Back to mtai" : "Back to the login page"}</Link>
            </p>
          </>
        ) : (
          <p role="status">Signing you in…</p>
        )}
      </div>
    </main>
  );
}
