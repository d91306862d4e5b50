import { toJson, type DescMessage, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import { stringify as toYaml } from "yaml";
import { UsageError } from "./exit.js";
import { OUTPUT_FORMATS } from "./output-option.js";

/** How a read command prints. */
export type OutputFormat = "table" | "json" | "yaml";

/** -o's value, or the default: a table on a terminal, JSON lines when piped. */
export function outputFormat(flag: string | undefined, isTty = Boolean(process.stdout.isTTY)): OutputFormat {
  if (flag === undefined) return isTty ? "table" : "json";
  if (!(OUTPUT_FORMATS as readonly string[]).includes(flag)) throw new UsageError(`-o must be one of ${OUTPUT_FORMATS.join(", ")}, got ${JSON.stringify(flag)}`);
  return flag as OutputFormat;
}

/** A proto message as its canonical JSON (enum names, camelCase fields, RFC 3339 times). */
export function messageJson<D extends DescMessage>(schema: D, message: MessageShape<D>): JsonValue {
  return toJson(schema, message, { alwaysEmitImplicit: false });
}

/** A column of a table: its title and how to read a cell from a row. */
export type Column<T> = [title: string, cell: (row: T) => string];

/** Aligned columns, a header line first; cells are cut at 60 characters (the last at 200). */
export function table<T>(rows: readonly T[], columns: ReadonlyArray<Column<T>>): string {
  // The last column (reasons, details) is cut later than the others: nothing follows it.
  const cells = rows.map((row) => columns.map(([, cell], i) => oneLine(cell(row), i === columns.length - 1 ? 200 : 60)));
  const titles = columns.map(([title]) => title);
  const widths = titles.map((t, i) => Math.max(t.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(titles), ...cells.map(line)].join("\n") + "\n";
}

function oneLine(value: string, max: number): string {
  const flat = value.replace(/\s+/g, " ");
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** What a read command shows: items (a list) or one item, as JSON values and as a table. */
export interface Printable<T> {
  items: readonly T[];
  /** One item (get) rather than a list: JSON/YAML print the object, not a list of one. */
  single?: boolean;
  json(item: T): JsonValue;
  columns: ReadonlyArray<Column<T>>;
  /** Extra top-level fields for JSON/YAML of a list ("nextPageToken"); shown under a table. */
  footer?: string;
}

/** Renders for the format: JSON lines (one item a line), YAML (a document), or a table. */
export function render<T>(format: OutputFormat, what: Printable<T>): string {
  if (format === "json") return what.items.map((item) => `${JSON.stringify(what.json(item))}\n`).join("");
  if (format === "yaml") return toYaml(what.single ? what.json(what.items[0]!) : what.items.map((i) => what.json(i)));
  if (what.items.length === 0 && !what.single) return "(none)\n";
  return table(what.items, what.columns) + (what.footer ? `${what.footer}\n` : "");
}

/** A generated enum's value for a table: TaskState.RUNNING -> "running". */
export function enumLabel(names: Record<number, string>, value: number): string {
  return (names[value] ?? String(value)).toLowerCase();
}

/** "12:03:04" for a table, or "" when unset. */
export function timeCell(ts: { seconds: bigint; nanos: number } | undefined): string {
  if (!ts) return "";
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6)).toISOString().replace("T", " ").slice(0, 19);
}
