// The logged-in session: kept in sessionStorage (gone when the tab closes), observable by React.
import { useSyncExternalStore } from "react";
import { navigate } from "./router";
import type { LoginResponse, Role, TenantRef, UserInfo } from "./types";

export interface Session {
  token: string;
  expiresAt: number;
  user: UserInfo;
  /** A platform administrator working inside a tenant (sent as X-Tenant-ID). */
  actingTenant: TenantRef | null;
}

const KEY = "mtai.session";
const listeners = new Set<() => void>();
let session: Session | null = load();
let endReason: string | null = null;

function load(): Session | null {
  const raw = sessionStorage.getItem(KEY);
  if (!raw) return null;
  try {
    const parsed = JSON.parse(raw) as Session;
    return parsed.expiresAt > Date.now() ? parsed : null;
  } catch {
    return null;
  }
}

function publish(next: Session | null): void {
  session = next;
  if (next) sessionStorage.setItem(KEY, JSON.stringify(next));
  else sessionStorage.removeItem(KEY);
  listeners.forEach((listener) => listener());
}

export const currentSession = (): Session | null => session;

/** The session a login answered (password, invitation or single sign-on), on the landing page. */
export function signIn(result: LoginResponse): void {
  endReason = null;
  publish({
    token: result.access_token,
    expiresAt: Date.now() + result.expires_in * 1000,
    user: result.user,
    actingTenant: null,
  });
  navigate(result.user.tenant ? "/chat" : "/tenants");
}

export function endSession(reason: string | null = null): void {
  endReason = reason;
  publish(null);
}

export function actIn(tenant: TenantRef | null): void {
  if (session) publish({ ...session, actingTenant: tenant });
}

/** Why the last session ended, when it was not the user's choice (shown once on the login page). */
export function takeEndReason(): string | null {
  const reason = endReason;
  endReason = null;
  return reason;
}

export function useSession(): Session | null {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => session,
  );
}

/** The tenant the session works in, and the role there (platform admins act as owners). */
export function tenantOf(s: Session): { tenant: TenantRef | null; role: Role | null } {
  if (s.actingTenant) return { tenant: s.actingTenant, role: "owner" };
  return { tenant: s.user.tenant, role: s.user.tenant?.role ?? null };
}

export const isTenantAdmin = (role: Role | null): boolean => role === "owner" || role === "admin";
