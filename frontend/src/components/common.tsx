// Small building blocks shared by the pages.
import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";
import { ApiError } from "../api";

/** An API error in the API's own words, with its code and request id for a support ticket. */
export function ErrorMessage({ error }: { error: unknown }) {
  if (!error) return null;
  const api = error instanceof ApiError ? error : null;
  const text = error instanceof Error ? error.message : String(error);
  return (
    <div className="error" role="alert">
      {text}
      {api && api.code && (
        <span className="error-meta">
          {" "}
          ({api.code}
          {api.requestId ? `, request ${api.requestId}` : ""})
        </span>
      )}
    </div>
  );
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** Loads on mount and whenever `deps` change; `reload` fetches again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  // Callers name the dependencies; the latest loader is read through a ref.
  const loader = useRef(load);
  loader.current = load;
  useEffect(() => {
    let live = true;
    setLoading(true);
    loader.current().then(
      (value) => {
        if (!live) return;
        setData(value);
        setError(null);
        setLoading(false);
      },
      (err: unknown) => {
        if (!live) return;
        setError(err);
        setLoading(false);
      },
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}

/** Runs an action, keeping its error for display and a busy flag for the button. */
export function useAction(): {
  busy: boolean;
  error: unknown;
  run: (action: () => Promise<void>) => Promise<void>;
  clear: () => void;
} {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = useCallback(async (action: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, run, clear: () => setError(null) };
}

export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [state, setState] = useState<"idle" | "copied" | "refused">("idle");
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setState("copied");
    } catch {
      // The clipboard API needs a secure origin (https or localhost).
      setState("refused");
    }
  };
  const shown = { idle: label, copied: "Copied", refused: "Select the text and press Ctrl+C" }[state];
  return (
    <button type="button" onClick={() => void copy()} aria-live="polite">
      {shown}
    </button>
  );
}

/** A secret shown once, with a copy button and a warning that it will not be shown again. */
/** An invitation's accept link, absolute (the server may answer with a path only). */
export const absoluteLink = (url: string): string => (url.startsWith("/") ? window.location.origin + url : url);

export function SecretOnce({ label, secret, onDone }: { label: string; secret: string; onDone: () => void }) {
  return (
    <div className="secret" role="status">
      <p>
        <strong>{label}</strong> It is shown only now: store it safely.
      </p>
      <div className="row">
        <input readOnly value={secret} aria-label={label} className="mono" onFocus={(e) => e.target.select()} />
        <CopyButton text={secret} />
        <button type="button" onClick={onDone}>
          Done
        </button>
      </div>
    </div>
  );
}

/** A modal dialog on the native <dialog>: focus is trapped and Escape closes it. */
export function Dialog({ title, open, onClose, children }: { title: string; open: boolean; onClose: () => void; children: ReactNode }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  return (
    <dialog ref={ref} onClose={onClose} aria-label={title}>
      <header className="dialog-head">
        <h2>{title}</h2>
        <button type="button" onClick={onClose} aria-label="Close">
          ×
        </button>
      </header>
      {open && children}
    </dialog>
  );
}

/** A scrollable data table: `columns` are the header cells, `children` the body rows. */
export function Table({ caption, columns, children, captionHidden = false }: {
  caption: string;
  columns: string[];
  children: ReactNode;
  captionHidden?: boolean;
}) {
  return (
    <div className="table-wrap">
      <table>
        <caption className={captionHidden ? "visually-hidden" : undefined}>{caption}</caption>
        <thead>
          <tr>
            {columns.map((column) => (
              <th key={column} scope="col">
                {column}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

export function PageTitle({ children, actions }: { children: ReactNode; actions?: ReactNode }) {
  useEffect(() => {
    document.title = `${typeof children === "string" ? children : "mtai"} · mtai`;
  }, [children]);
  return (
    <div className="page-title">
      <h1>{children}</h1>
      {actions}
    </div>
  );
}

export function Pager({ total, limit, offset, onChange }: { total: number; limit: number; offset: number; onChange: (offset: number) => void }) {
  if (total <= limit) return null;
  return (
    <nav className="pager" aria-label="Pages">
      <button type="button" disabled={offset === 0} onClick={() => onChange(Math.max(0, offset - limit))}>
        Previous
      </button>
      <span>
        {offset + 1}–{Math.min(offset + limit, total)} of {total}
      </span>
      <button type="button" disabled={offset + limit >= total} onClick={() => onChange(offset + limit)}>
        Next
      </button>
    </nav>
  );
}

export const when = (iso: string | null): string => (iso ? new Date(iso).toLocaleString() : "—");

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function usd(value: string | number): string {
  const n = Number(value);
  // Cents for real money; more digits for the fractions of a cent single requests cost.
  return `$${n !== 0 && Math.abs(n) < 0.01 ? n.toFixed(6) : n.toFixed(2)}`;
}
