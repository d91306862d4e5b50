// Figures, their statistics, the tables the bench prints, and the results files it writes.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";

/** A target from issue 11: the figure's median must satisfy `op value`. */
export interface Target {
  op: "<=" | "<" | ">=";
  value: number;
}

/** One figure of a scenario: a sample per run (or a text when it cannot be measured yet). */
export interface Figure {
  key: string;
  label: string;
  unit: string;
  samples: number[];
  target?: Target;
  /** Shown instead of numbers when there are no samples ("n/a (no metric yet)"). */
  text?: string;
  /** What the figure reached when a bound cut the run short, or how it was measured. */
  note?: string;
  /** A process's CPU or memory: listed after the scenario's own figures. */
  usage?: boolean;
}

/** What one scenario reports. */
export interface ScenarioResult {
  scenario: string;
  figures: Figure[];
  notes: string[];
  /** Nothing was measured (a peer not installed): the results file of an earlier run stays. */
  skipped?: boolean;
}

/** The median, min and max of a figure's samples. */
export interface Summary {
  median: number;
  min: number;
  max: number;
}

/** p in [0, 1] of ascending-sorted values (nearest rank); NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * p) - 1))]!;
}

/** Median, min and max; NaN when there is no sample. */
export function summarize(samples: readonly number[]): Summary {
  const finite = samples.filter((s) => Number.isFinite(s)).sort((a, b) => a - b);
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
  const mid = finite.length >> 1;
  const median = finite.length % 2 ? finite[mid]! : (finite[mid - 1]! + finite[mid]!) / 2;
  return { median, min: finite[0]!, max: finite.at(-1)! };
}

/** Whether a median meets its target; undefined without a target or a number. */
export function meets(median: number, target: Target | undefined): boolean | undefined {
  if (!target || !Number.isFinite(median)) return undefined;
  if (target.op === "<=") return median <= target.value;
  if (target.op === "<") return median < target.value;
  return median >= target.value;
}

/** Collects figures across runs: add the same key once per run. */
export class FigureSet {
  private readonly byKey = new Map<string, Figure>();

  /** Adds one run's sample of a figure (NaN when the run could not measure it). */
  add(key: string, label: string, unit: string, value: number, extra: { target?: Target; note?: string; usage?: boolean } = {}): void {
    let f = this.byKey.get(key);
    if (!f) this.byKey.set(key, (f = { key, label, unit, samples: [], ...(extra.usage ? { usage: true } : {}) }));
    f.samples.push(value);
    if (extra.target) f.target = extra.target;
    if (extra.note) f.note = extra.note;
  }

  /** A figure that cannot be measured yet, shown as text. */
  text(key: string, label: string, text: string, target?: Target, unit = ""): void {
    this.byKey.set(key, { key, label, unit, samples: [], text, ...(target ? { target } : {}) });
  }

  get(key: string): Figure | undefined {
    return this.byKey.get(key);
  }

  list(): Figure[] {
    const all = [...this.byKey.values()];
    return [...all.filter((f) => !f.usage), ...all.filter((f) => f.usage)];
  }
}

/** A number for a table: 3 significant digits, thousands separated. */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return "-";
  const abs = Math.abs(n);
  if (abs >= 100) return Math.round(n).toLocaleString("en-US");
  if (abs >= 10) return n.toFixed(1);
  if (abs >= 1) return n.toFixed(2);
  if (abs === 0) return "0";
  return n.toPrecision(2);
}

function targetText(t: Target | undefined, unit: string): string {
  return t ? `${t.op} ${fmt(t.value)} ${unit}`.trim() : "";
}

interface Row {
  label: string;
  median: string;
  range: string;
  unit: string;
  target: string;
  met: string;
  note: string;
}

function rowsOf(figures: readonly Figure[]): Row[] {
  return figures.map((f) => {
    const s = summarize(f.samples);
    const ok = meets(s.median, f.target);
    const text = f.text ?? (f.samples.length === 0 || !Number.isFinite(s.median) ? "n/a" : undefined);
    return {
      label: f.label,
      median: text ?? fmt(s.median),
      range: text || f.samples.length < 2 ? "" : `${fmt(s.min)} - ${fmt(s.max)}`,
      unit: text ? "" : f.unit,
      target: targetText(f.target, f.unit),
      met: ok === undefined ? (f.target ? "missed (not measured)" : "") : ok ? "met" : "MISSED",
      note: f.note ?? "",
    };
  });
}

const COLUMNS: Array<[keyof Row, string]> = [
  ["label", "figure"],
  ["median", "median"],
  ["range", "min - max"],
  ["unit", "unit"],
  ["target", "target"],
  ["met", "met"],
  ["note", "note"],
];

/** A plain-text table for the terminal. */
export function textTable(title: string, figures: readonly Figure[]): string {
  const rows = rowsOf(figures);
  const width = COLUMNS.map(([k, h]) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 1 || i === 2 ? c.padStart(width[i]!) : c.padEnd(width[i]!))).join("  ").trimEnd();
  return [`\n== ${title}`, line(COLUMNS.map(([, h]) => h)), line(width.map((w) => "-".repeat(w))), ...rows.map((r) => line(COLUMNS.map(([k]) => r[k])))].join("\n") + "\n";
}

/** A Markdown table (for bench/README.md). */
export function markdownTable(figures: readonly Figure[]): string {
  const rows = rowsOf(figures);
  const esc = (s: string) => s.replaceAll("|", "\\|");
  return [
    `| ${COLUMNS.map(([, h]) => h).join(" | ")} |`,
    `| ${COLUMNS.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${COLUMNS.map(([k]) => esc(r[k])).join(" | ")} |`),
  ].join("\n");
}

/** What every results file says about where and how it was measured. */
export function environment(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model ?? "",
    memory_gib: Math.round(totalmem() / 2 ** 30),
    load_average: loadavg().map((l) => Number(l.toFixed(2))),
    transport: "mTLS (SPIFFE certificates), 127.0.0.1",
    message_security: "required (HMAC-SHA256 batches both ways)",
    sqlite_synchronous: "FULL",
    ...extra,
  };
}

/** Writes `<dir>/<scenario>.json`: every figure with its samples, median, min and max, and whether it met its target. */
export function writeResult(dir: string, result: ScenarioResult, env: Record<string, unknown>): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${result.scenario}.json`);
  const figures = result.figures.map((f) => {
    const s = summarize(f.samples);
    const clean = (n: number) => (Number.isFinite(n) ? Number(n.toPrecision(6)) : null);
    return { ...f, samples: f.samples.map(clean), median: clean(s.median), min: clean(s.min), max: clean(s.max), met: meets(s.median, f.target) ?? null };
  });
  writeFileSync(path, JSON.stringify({ scenario: result.scenario, environment: env, figures, notes: result.notes }, null, 2) + "\n");
  return path;
}
