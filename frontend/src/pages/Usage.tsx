// Usage and cost per day and model: a tenant's own, or (platform) every tenant's.
import { useMemo, useState } from "react";
import { get } from "../api";
import { ErrorMessage, PageTitle, Table, useLoad, usd } from "../components/common";
import { METRIC_LABELS, UsageChart, daysBetween, type Metric } from "../components/UsageChart";
import type { Page, Tenant, UsageReport } from "../types";

const isoDay = (d: Date) => d.toISOString().slice(0, 10);

export function Usage({ scope }: { scope: "tenant" | "platform" }) {
  const today = new Date();
  const [until, setUntil] = useState(isoDay(today));
  const [since, setSince] = useState(isoDay(new Date(today.getTime() - 29 * 86400_000)));
  const [metric, setMetric] = useState<Metric>("cost_usd");
  const report = useLoad(() => get<UsageReport>(`/api/v1/admin/usage?since=${since}&until=${until}`), [since, until]);
  const tenants = useLoad(
    () => (scope === "platform" ? get<Page<Tenant>>("/api/v1/tenants/?limit=200") : Promise.resolve(null)),
    [scope],
  );
  const slug = (id: string) => tenants.data?.items.find((t) => t.id === id)?.slug ?? id.slice(0, 8);
  const totals = report.data?.totals;
  const days = useMemo(() => daysBetween(report.data?.since ?? since, report.data?.until ?? until), [report.data, since, until]);
  return (
    <>
      <PageTitle>{scope === "platform" ? "Platform usage" : "Usage and cost"}</PageTitle>
      <form className="inline-form" aria-label="Period and measure" onSubmit={(e) => e.preventDefault()}>
        <label>
          From
          <input type="date" value={since} max={until} onChange={(e) => setSince(e.target.value)} />
        </label>
        <label>
          To
          <input type="date" value={until} min={since} onChange={(e) => setUntil(e.target.value)} />
        </label>
        <label>
          Measure
          <select value={metric} onChange={(e) => setMetric(e.target.value as Metric)}>
            {(Object.keys(METRIC_LABELS) as Metric[]).map((m) => (
              <option key={m} value={m}>
                {METRIC_LABELS[m]}
              </option>
            ))}
          </select>
        </label>
      </form>
      <ErrorMessage error={report.error ?? tenants.error} />
      {totals && (
        <dl className="totals" data-testid="usage-totals">
          <div>
            <dt>Requests</dt>
            <dd>{totals.requests}</dd>
          </div>
          <div>
            <dt>Errors</dt>
            <dd>{totals.errors}</dd>
          </div>
          <div>
            <dt>Tokens</dt>
            <dd>{totals.prompt_tokens + totals.completion_tokens}</dd>
          </div>
          <div>
            <dt>Cost</dt>
            <dd>{usd(totals.cost_usd)}</dd>
          </div>
        </dl>
      )}
      {report.data && report.data.daily.length > 0 && <UsageChart rows={report.data.daily} metric={metric} days={days} />}
      {report.data && report.data.daily.length === 0 && <p className="muted">No requests in this period.</p>}
      <Table
        caption="Per day and model"
        columns={["Day", ...(scope === "platform" ? ["Tenant"] : []), "Model", "Requests", "Errors", "Prompt tokens", "Completion tokens", "Cost"]}
      >
        {report.data?.daily.map((r) => (
          <tr key={`${r.day}-${r.tenant_id}-${r.model}`} data-model={r.model}>
            <td>{r.day}</td>
            {scope === "platform" && <td className="mono">{slug(r.tenant_id)}</td>}
            <td className="mono">{r.model}</td>
            <td>{r.requests}</td>
            <td>{r.errors}</td>
            <td>{r.prompt_tokens}</td>
            <td>{r.completion_tokens}</td>
            <td>{usd(r.cost_usd)}</td>
          </tr>
        ))}
      </Table>
    </>
  );
}
