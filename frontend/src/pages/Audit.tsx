// The audit trail: who did what, when (a tenant's, or the platform's for platform admins).
import { useState } from "react";
import { get } from "../api";
import { ErrorMessage, PageTitle, Pager, useLoad, when, Table } from "../components/common";
import type { AuditEvent, Page } from "../types";

const PAGE = 50;

export function Audit({ title }: { title: string }) {
  const [offset, setOffset] = useState(0);
  const [action, setAction] = useState("");
  const [filter, setFilter] = useState("");
  const query = `limit=${PAGE}&offset=${offset}${filter ? `&action=${encodeURIComponent(filter)}` : ""}`;
  const events = useLoad(() => get<Page<AuditEvent>>(`/api/v1/admin/audit?${query}`), [query]);
  return (
    <>
      <PageTitle>{title}</PageTitle>
      <form
        className="inline-form"
        aria-label="Filter"
        onSubmit={(e) => {
          e.preventDefault();
          setOffset(0);
          setFilter(action.trim());
        }}
      >
    <label>
      Action
      <input value={action} placeholder="api_key.revoke" onChange={(e) => setAction(e.target.value)} />
    </label>
    <button type="submit">Filter</button>
  </form>
  <ErrorMessage error={events.error} />
  <Table caption="Audit events" columns={["When", "Action", "Actor", "Target", "Details"]} captionHidden>
        {events.data?.items.map((e) => (
          <tr key={e.id}>
            <td>{when(e.created_at)}</td>
            <td className="mono">{e.action}</td>
            <td>
              {e.actor_type} <span className="mono small">{e.actor_id ?? ""}</span>
            </td>
            <td>
              {e.target_type ?? ""} <span className="mono small">{e.target_id ?? ""}</span>
            </td>
            <td className="mono small">{Object.keys(e.details).length ? JSON.stringify(e.details) : ""}</td>
          </tr>
        ))}
      </Table>
      {events.data && <Pager total={events.data.total} limit={PAGE} offset={offset} onChange={setOffset} />}
    </>
  );
}
