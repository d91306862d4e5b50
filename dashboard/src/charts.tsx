import type { Sample } from "./model.js";
import { ms } from "./format.js";

interface Line {
  key: keyof Omit<Sample, "at">;
  label: string;
  className: string;
}

function Chart(props: { title: string; testId: string; samples: Sample[]; lines: Line[]; format: (v: number) => string; max?: number }) {
  const { samples, lines } = props;
  const w = 240;
  const h = 64;
  const top = props.max ?? Math.max(1, ...samples.flatMap((s) => lines.map((l) => s[l.key])));
  const x = (i: number) => (samples.length <= 1 ? w : (i / (samples.length - 1)) * w);
  const y = (v: number) => h - 2 - (Math.min(v, top) / top) * (h - 4);
  const last = samples.at(-1);
  return (
    <figure class="chart" data-testid={props.testId}>
      <figcaption>
        {props.title}
        {lines.map((l) => (
          <span class={`legend ${l.className}`} key={l.key}>
            {l.label} {last ? props.format(last[l.key]) : "–"}
          </span>
        ))}
      </figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} width={w} height={h} role="img" aria-label={props.title}>
        <line x1="0" y1={h - 1} x2={w} y2={h - 1} class="axis" />
        {lines.map((l) => (
          <polyline key={l.key} class={l.className} fill="none" points={samples.map((s, i) => `${x(i).toFixed(1)},${y(s[l.key]).toFixed(1)}`).join(" ")} />
        ))}
      </svg>
    </figure>
  );
}

/** The spec's metrics as small charts: message latency, coordination success rate, directive completion time. */
export function Charts(props: { samples: Sample[]; available: boolean }) {
  if (!props.available) return <p class="muted">The Performance Monitor runs in another process: its figures are not shown here.</p>;
  return (
    <div class="charts">
      <Chart title="message latency" testId="chart-latency" samples={props.samples} format={ms} lines={[{ key: "latencyP50", label: "p50", className: "l1" }, { key: "latencyP99", label: "p99", className: "l2" }]} />
      <Chart title="coordination success rate" testId="chart-success" samples={props.samples} format={(v) => `${v.toFixed(0)} %`} max={100} lines={[{ key: "successRate", label: "rounds", className: "l1" }]} />
      <Chart title="directive completion time" testId="chart-completion" samples={props.samples} format={ms} lines={[{ key: "completionP50", label: "p50", className: "l1" }, { key: "completionP99", label: "p99", className: "l2" }]} />
    </div>
  );
}
