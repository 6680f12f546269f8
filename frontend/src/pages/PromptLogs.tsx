// Prompt and response text, kept only where the tenant's settings enable prompt logging.
import { useState } from "react";
import { get } from "../api";
import { ErrorMessage, PageTitle, Pager, useLoad, when } from "../components/common";
import type { Page, PromptLog } from "../types";

const PAGE = 20;

export function PromptLogs() {
  const [offset, setOffset] = useState(0);
  const logs = useLoad(() => get<Page<PromptLog>>(`/api/v1/admin/prompt-logs?limit=${PAGE}&offset=${offset}`), [offset]);
  return (
    <>
      <PageTitle>Prompt logs</PageTitle>
      <p className="muted">
        Kept only when the tenant's settings have <code>log_prompts</code> on, for <code>prompt_log_retention_days</code>.
      </p>
      <ErrorMessage error={logs.error} />
      {logs.data && logs.data.items.length === 0 && <p className="muted">No prompt logs.</p>}
      {logs.data?.items.map((log) => (
        <details key={log.request_id} className="card">
          <summary>
            {when(log.created_at)} · <span className="mono">{log.model}</span> · request {log.request_id}
          </summary>
          {log.prompt.map((m, i) => (
            <p key={i}>
              <strong>{m.role ?? "?"}:</strong> {m.content ?? ""}
            </p>
          ))}
          <p>
            <strong>answer:</strong> {log.response}
          </p>
        </details>
      ))}
      {logs.data && <Pager total={logs.data.total} limit={PAGE} offset={offset} onChange={setOffset} />}
    </>
  );
}
