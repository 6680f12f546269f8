// Tenant administration: members and their roles, and invitations (the only way to add someone).
import { useState, type FormEvent } from "react";
import { api, get } from "../api";
import { absoluteLink, ErrorMessage, PageTitle, Pager, SecretOnce, useAction, useLoad, when, Table } from "../components/common";
import type { Invitation, InvitationIssued, Member, Page, Role } from "../types";

const ROLES: Role[] = ["member", "admin", "owner"];
const PAGE = 50;

function Invitations({ reloadKey }: { reloadKey: number }) {
  const [offset, setOffset] = useState(0);
  const pending = useLoad(() => get<Page<Invitation>>(`/api/v1/invitations?limit=${PAGE}&offset=${offset}`), [offset, reloadKey]);
  const action = useAction();
  const revoke = (invitation: Invitation) => {
    if (!window.confirm(`Revoke the invitation of ${invitation.email}? Its link stops working.`)) return;
    void action.run(async () => {
      await api("DELETE", `/api/v1/invitations/${invitation.id}`);
      pending.reload();
    });
  };
  return (
    <section aria-labelledby="pending-invitations">
      <h2 id="pending-invitations">Pending invitations</h2>
      <ErrorMessage error={pending.error ?? action.error} />
      <Table caption="Pending invitations" captionHidden columns={["Email", "Role", "Invited", "Expires", "Actions"]}>
        {pending.data?.items.map((i) => (
          <tr key={i.id}>
            <td>{i.email}</td>
            <td>{i.role}</td>
            <td>{when(i.created_at)}</td>
            <td>{when(i.expires_at)}</td>
            <td className="actions">
              <button type="button" onClick={() => revoke(i)} aria-label={`Revoke the invitation of ${i.email}`}>
                Revoke
              </button>
            </td>
          </tr>
        ))}
      </Table>
      {pending.data && pending.data.total === 0 && <p className="muted">No pending invitations.</p>}
      {pending.data && <Pager total={pending.data.total} limit={PAGE} offset={offset} onChange={setOffset} />}
    </section>
  );
}

export function Users() {
  const [offset, setOffset] = useState(0);
  const users = useLoad(() => get<Page<Member>>(`/api/v1/users?limit=${PAGE}&offset=${offset}`), [offset]);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<Role>("member");
  const [issued, setIssued] = useState<InvitationIssued | null>(null);
  const [invitations, setInvitations] = useState(0);
  const action = useAction();
  const invite = (event: FormEvent) => {
    event.preventDefault();
    void action.run(async () => {
      setIssued(await api<InvitationIssued>("POST", "/api/v1/invitations", { email, role }));
      setEmail("");
      setInvitations((n) => n + 1);
    });
  };
  const changeRole = (user: Member, next: Role) =>
    void action.run(async () => {
      await api("PATCH", `/api/v1/users/${user.id}`, { role: next });
      users.reload();
    });
  const signOut = (user: Member) =>
    void action.run(async () => {
      await api("POST", `/api/v1/users/${user.id}/sign-out`);
    });
  const remove = (user: Member) => {
    if (!window.confirm(`Remove ${user.email} from this tenant? The API keys they created here are revoked too.`)) return;
    void action.run(async () => {
      await api("DELETE", `/api/v1/users/${user.id}`);
      users.reload();
    });
  };
  return (
    <>
      <PageTitle>Users</PageTitle>
      <form className="inline-form" onSubmit={invite} aria-label="Invite a person">
        <label>
          Email
          <input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Role
          <select value={role} onChange={(e) => setRole(e.target.value as Role)}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <button type="submit" className="primary" disabled={action.busy}>
          Invite
        </button>
      </form>
      <p className="muted">
        The person accepts with the invitation link: a new account chooses its own password, an existing one logs in.
      </p>
      {issued && (
        <SecretOnce
          label={`Invitation link for ${issued.email}.`}
          secret={issued.accept_url ? absoluteLink(issued.accept_url) : `Mailed to ${issued.email}.`}
          onDone={() => setIssued(null)}
        />
      )}
      <ErrorMessage error={users.error ?? action.error} />
      <Table caption="Members of this tenant" columns={["Email", "Name", "Role", "Member since", "Actions"]}>
        {users.data?.items.map((u) => (
          <tr key={u.id}>
            <td>{u.email}</td>
            <td>{u.display_name || "—"}</td>
            <td>
              <select aria-label={`Role of ${u.email}`} value={u.role} onChange={(e) => changeRole(u, e.target.value as Role)}>
                {ROLES.map((r) => (
                  <option key={r}>{r}</option>
                ))}
              </select>
            </td>
            <td>{when(u.member_since)}</td>
            <td className="actions">
              <button type="button" onClick={() => signOut(u)} aria-label={`Sign out ${u.email} everywhere`}>
                Sign out
              </button>
              <button type="button" onClick={() => remove(u)} aria-label={`Remove ${u.email}`}>
                Remove
              </button>
            </td>
          </tr>
        ))}
      </Table>
      {users.data && <Pager total={users.data.total} limit={PAGE} offset={offset} onChange={setOffset} />}
      <Invitations reloadKey={invitations} />
    </>
  );
}
