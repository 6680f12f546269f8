// Client-side routing under /ui: the server answers every /ui/* page with index.html.
import { useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent } from "react";

const BASE = "/ui";
const listeners = new Set<() => void>();
window.addEventListener("popstate", () => listeners.forEach((l) => l()));

function path(): string {
  const rest = window.location.pathname.slice(BASE.length).replace(/\/+$/, "");
  return rest || "/";
}

export function navigate(to: string): void {
  window.history.pushState(null, "", BASE + to);
  listeners.forEach((l) => l());
}

export function usePath(): string {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    path,
  );
}

type LinkProps = AnchorHTMLAttributes<HTMLAnchorElement> & { to: string };

export function Link({ to, onClick, ...rest }: LinkProps) {
  const handle = (event: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(event);
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    navigate(to);
  };
  return <a href={BASE + to} onClick={handle} {...rest} />;
}
