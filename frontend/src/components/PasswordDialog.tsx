// Changing one's own password (POST /api/v1/auth/password); it ends every session, this one too.
import { useState, type FormEvent } from "react";
import { api } from "../api";
import { endSession } from "../session";
import { Dialog, ErrorMessage, useAction } from "./common";

export function PasswordDialog({ open, onClose }: { open: boolean; onClose: () => void }) {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [again, setAgain] = useState("");
  const [done, setDone] = useState(false);
  const action = useAction();
  const close = () => {
    setCurrent("");
    setNext("");
    setAgain("");
    setDone(false);
    action.clear();
    onClose();
  };
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (next !== again) {
      void action.run(() => Promise.reject(new Error("The two new passwords differ.")));
      return;
    }
    void action.run(async () => {
      await api("POST", "/api/v1/auth/password", { current_password: current, new_password: next });
      setDone(true);
    });
  };
  return (
    <Dialog title="Change password" open={open} onClose={close}>
      {done ? (
        <div className="stack">
          <p role="status">
            Your password is changed. Every session of your account has ended, this one included: log in again with
            the new password.
          </p>
          <button type="button" className="primary" onClick={() => endSession("Your password is changed: log in with the new one.")}>
            Log in again
          </button>
        </div>
      ) : (
        <form className="stack" onSubmit={submit}>
          <label>
            Current password
            <input type="password" autoComplete="current-password" required value={current} onChange={(e) => setCurrent(e.target.value)} />
          </label>
          <label>
            New password (12 characters or more)
            <input type="password" autoComplete="new-password" required minLength={12} value={next} onChange={(e) => setNext(e.target.value)} />
          </label>
          <label>
            New password again
            <input type="password" autoComplete="new-password" required value={again} onChange={(e) => setAgain(e.target.value)} />
          </label>
          <ErrorMessage error={action.error} />
          <button type="submit" className="primary" disabled={action.busy}>
            Change password
          </button>
        </form>
      )}
    </Dialog>
  );
}
