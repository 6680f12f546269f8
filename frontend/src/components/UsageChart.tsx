// Daily usage per model as a stacked bar chart (Chart.js), with the same numbers as a table.
import { useEffect, useRef } from "react";
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from "chart.js";
import type { DailyUsage } from "../types";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

export type Metric = "cost_usd" | "requests" | "tokens";

export const METRIC_LABELS: Record<Metric, string> = {
  cost_usd: "Cost (USD)",
  requests: "Requests",
  tokens: "Tokens",
};

const PALETTE = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#65a30d", "#db2777"];

export function measure(row: DailyUsage, metric: Metric): number {
  if (metric === "cost_usd") return Number(row.cost_usd);
  if (metric === "requests") return row.requests;
  return row.prompt_tokens + row.completion_tokens;
}

/** Every day from `since` to `until` (YYYY-MM-DD), so quiet days show as gaps. */
export function daysBetween(since: string, until: string): string[] {
  const days: string[] = [];
  for (let t = Date.parse(`${since}T00:00:00Z`); t <= Date.parse(`${until}T00:00:00Z`); t += 86_400_000) {
    days.push(new Date(t).toISOString().slice(0, 10));
  }
  return days;
}

export function UsageChart({ rows, metric, days }: { rows: DailyUsage[]; metric: Metric; days: string[] }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (!canvas.current) return;
    const models = [...new Set(rows.map((r) => r.model))].sort();
    const datasets = models.map((model, i) => ({
      label: model,
      backgroundColor: PALETTE[i % PALETTE.length],
      data: days.map((day) =>
        rows.filter((r) => r.day === day && r.model === model).reduce((sum, r) => sum + measure(r, metric), 0),
      ),
    }));
    const chart = new Chart(canvas.current, {
      type: "bar",
      data: { labels: days, datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: METRIC_LABELS[metric] } } },
        plugins: { legend: { position: "bottom" } },
      },
    });
    return () => chart.destroy();
  }, [rows, metric, days]);
  return (
    <div className="chart">
      <canvas ref={canvas} role="img" aria-label={`${METRIC_LABELS[metric]} per day and model; the table below has the numbers`} />
    </div>
  );
}
