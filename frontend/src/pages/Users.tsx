// Tenant administration: members and their roles.
import { useState, type FormEvent } from "react";
import { api, get } from "../api";
import { ErrorMessage, PageTitle, Pager, SecretOnce, useAction, useLoad, when, Table } from "../components/common";
import type { Member, MemberCreated, Page, Role } from "../types";

const ROLES: Role[] = ["member", "admin", "owner"];
const PAGE = 50;

export function Users() {
  const [offset, setOffset] = useState(0);
  const users = useLoad(() => get<Page<Member>>(`/api/v1/users?limit=${PAGE}&offset=${offset}`), [offset]);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<Role>("member");
  const [created, setCreated] = useState<MemberCreated | null>(null);
  const action = useAction();
  const add = (event: FormEvent) => {
    event.preventDefault();
    void action.run(async () => {
      setCreated(await api<MemberCreated>("POST", "/api/v1/users", { email, role }));
      setEmail("");
      users.reload();
    });
  };
  const changeRole = (user: Member, next: Role) =>
    void action.run(async () => {
      await api("PATCH", `/api/v1/users/${user.id}`, { role: next });
      users.reload();
    });
  const remove = (user: Member) => {
    if (!window.confirm(`Remove ${user.email} from this tenant?`)) return;
    void action.run(async () => {
      await api("DELETE", `/api/v1/users/${user.id}`);
      users.reload();
    });
  };
  return (
    <>
      <PageTitle>Users</PageTitle>
      <form className="inline-form" onSubmit={add} aria-label="Add a user">
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
          Add user
        </button>
      </form>
      {created?.initial_password && (
        <SecretOnce label={`Initial password of ${created.email}.`} secret={created.initial_password} onDone={() => setCreated(null)} />
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
              <button type="button" onClick={() => remove(u)} aria-label={`Remove ${u.email}`}>
                Remove
              </button>
            </td>
          </tr>
        ))}
      </Table>
      {users.data && <Pager total={users.data.total} limit={PAGE} offset={offset} onChange={setOffset} />}
    </>
  );
}
