// The shell: login when there is no session, otherwise navigation by role and the current page.
import { useEffect, useState, type ReactNode } from "react";
import { Link, navigate, usePath } from "./router";
import { actIn, endSession, isTenantAdmin, tenantOf, useSession, type Session } from "./session";
import { Login } from "./pages/Login";
import { Chat } from "./pages/Chat";
import { Tenants } from "./pages/Tenants";
import { Models } from "./pages/Models";
import { Users } from "./pages/Users";
import { Keys } from "./pages/Keys";
import { Knowledge } from "./pages/Knowledge";
import { Search } from "./pages/Search";
import { Usage } from "./pages/Usage";
import { Audit } from "./pages/Audit";
import { PromptLogs } from "./pages/PromptLogs";
import { Accept } from "./pages/Accept";
import { Settings } from "./pages/Settings";
import { SsoReturn } from "./pages/SsoReturn";
import { PasswordDialog } from "./components/PasswordDialog";
import { SsoLinkDialog } from "./components/SsoLinkDialog";
import { useLoad } from "./components/common";
import { get } from "./api";
import type { MyInvitation } from "./types";

interface Route {
  path: string;
  label: string;
  section: "Workspace" | "Tenant admin" | "Platform";
  page: () => ReactNode;
}

function routesFor(session: Session): Route[] {
  const { tenant, role } = tenantOf(session);
  const routes: Route[] = [];
  if (tenant) {
    routes.push(
      { path: "/chat", label: "Chat", section: "Workspace", page: () => <Chat /> },
      { path: "/knowledge", label: "Knowledge bases", section: "Workspace", page: () => <Knowledge /> },
      { path: "/search", label: "Search and explain", section: "Workspace", page: () => <Search /> },
    );
    if (isTenantAdmin(role)) {
      routes.push(
        { path: "/users", label: "Users", section: "Tenant admin", page: () => <Users /> },
        { path: "/keys", label: "API keys", section: "Tenant admin", page: () => <Keys /> },
        { path: "/usage", label: "Usage and cost", section: "Tenant admin", page: () => <Usage scope="tenant" /> },
        { path: "/audit", label: "Audit log", section: "Tenant admin", page: () => <Audit title="Audit log" /> },
        { path: "/prompt-logs", label: "Prompt logs", section: "Tenant admin", page: () => <PromptLogs /> },
        { path: "/settings", label: "Settings", section: "Tenant admin", page: () => <Settings /> },
      );
    }
  }
  // Platform pages need a token for no tenant (a platform login), not one tied to a tenant.
  if (session.user.is_platform_admin && !session.user.tenant && !session.actingTenant) {
    routes.push(
      { path: "/tenants", label: "Tenants", section: "Platform", page: () => <Tenants /> },
      { path: "/models", label: "Models and prices", section: "Platform", page: () => <Models /> },
      { path: "/platform-usage", label: "Platform usage", section: "Platform", page: () => <Usage scope="platform" /> },
      { path: "/platform-audit", label: "Platform audit", section: "Platform", page: () => <Audit title="Platform audit" /> },
    );
  }
  return routes;
}

function Nav({ routes, current, onNavigate }: { routes: Route[]; current: string; onNavigate: () => void }) {
  const sections = [...new Set(routes.map((r) => r.section))];
  return (
    <nav aria-label="Main">
      {sections.map((section) => (
        <div key={section} className="nav-section">
          <h2>{section}</h2>
          <ul>
            {routes
              .filter((r) => r.section === section)
              .map((r) => (
                <li key={r.path}>
                  <Link to={r.path} aria-current={r.path === current ? "page" : undefined} onClick={onNavigate}>
                    {r.label}
                  </Link>
                </li>
              ))}
          </ul>
        </div>
      ))}
    </nav>
  );
}

/** Invitations addressed to the logged-in person; accepting needs the link they received. */
function PendingInvitations() {
  const mine = useLoad(() => get<MyInvitation[]>("/api/v1/auth/invitations"), []);
  if (!mine.data?.length) return null;
  return (
    <div className="notice" role="status" data-testid="my-invitations">
      You are invited to{" "}
      {mine.data.map((i) => `${i.tenant.name} (${i.role})`).join(", ")}. Open the invitation link you received to accept.
    </div>
  );
}

function Shell({ session }: { session: Session }) {
  const path = usePath();
  const [menuOpen, setMenuOpen] = useState(false);
  const [passwordOpen, setPasswordOpen] = useState(false);
  const [linkOpen, setLinkOpen] = useState(false);
  const routes = routesFor(session);
  const route = routes.find((r) => r.path === path);
  const { tenant, role } = tenantOf(session);
  useEffect(() => {
    if (!route && routes.length) navigate(routes[0].path);
  }, [route, routes]);
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <button
          type="button"
          className="menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="sidebar"
          onClick={() => setMenuOpen((open) => !open)}
        >
          Menu
        </button>
        <span className="brand">mtai</span>
        <span className="who" data-testid="who">
          {session.user.email}
          {tenant ? ` · ${tenant.name} (${role})` : " · platform"}
        </span>
        {session.actingTenant && (
          <button type="button" onClick={() => { actIn(null); navigate("/tenants"); }}>
            Back to platform
          </button>
        )}
        <button type="button" onClick={() => setPasswordOpen(true)}>
          Password
        </button>
        {session.user.tenant && !session.actingTenant && (
          <button type="button" onClick={() => setLinkOpen(true)}>
            Link SSO
          </button>
        )}
        <button type="button" onClick={() => endSession()}>
          Log out
        </button>
      </header>
      <PasswordDialog open={passwordOpen} onClose={() => setPasswordOpen(false)} />
      {session.user.tenant && <SsoLinkDialog tenant={session.user.tenant} open={linkOpen} onClose={() => setLinkOpen(false)} />}
      <aside id="sidebar" className={menuOpen ? "open" : ""}>
        <Nav routes={routes} current={path} onNavigate={() => setMenuOpen(false)} />
      </aside>
      <main id="main" tabIndex={-1}>
        <PendingInvitations />
        {route ? route.page() : <p>This account has no pages here: ask an administrator for a role in a tenant.</p>}
      </main>
    </div>
  );
}

export function App() {
  const session = useSession();
  const path = usePath();
  if (path === "/accept") return <Accept />;
  if (path === "/sso") return <SsoReturn />;
  return session ? <Shell key={`${session.user.id}:${session.actingTenant?.id ?? ""}`} session={session} /> : <Login />;
}
