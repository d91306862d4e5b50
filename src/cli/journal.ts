import { adoptJournal, checkJournal, resetJournal, type JournalReport } from "../store/index.js";
import { UsageError } from "./exit.js";
import { serveConfig } from "./serve.js";

/** Flags of `baton journal`. */
export interface JournalFlags {
  config?: string;
  "data-dir"?: string;
  force?: boolean;
}

function describe(report: JournalReport): string {
  const found = report.inspection;
  if (found.kind === "new") return `${report.files.db}: no journal yet`;
  const records = [...found.records].map(([kind, n]) => `${kind || "(other)"} ${n}`).join(", ") || "no records";
  if (found.kind === "legacy") return `${report.files.db}: a journal without a header (written before format 1; adopted at the next start): ${records}`;
  return `${report.files.db}: journal ${found.journalId}, commit ${found.commit} (${report.files.state} records ${found.state?.commit ?? "nothing"}): ${records}`;
}

/** `baton journal check`, `reset` and `adopt`, on the journal `baton serve` would use; returns the lines to print. A damaged journal throws its JournalError. */
export function journal(sub: string | undefined, flags: JournalFlags, env: Record<string, string | undefined>): string[] {
  const config = serveConfig({ ...(flags.config !== undefined ? { config: flags.config } : {}) }, env);
  if (flags["data-dir"]) config.store.dataDir = flags["data-dir"];
  if (sub === "check") return [describe(checkJournal(config)), "ok: a start would load this journal"];
  if (sub === "reset") {
    const report = resetJournal(config, { force: flags.force ?? false });
    const { names, to } = report.moved!;
    if (names.length === 0) return [`${report.files.db}: nothing to reset`];
    return [`moved ${names.join(", ")} to ${to}`, "the next start begins a new, empty journal"];
  }
  if (sub === "adopt") {
    const report = adoptJournal(config);
    const aside = report.moved!.names.length ? `; the previous state file is in ${report.moved!.to}` : "";
    return [describe(report), `adopted: the next start loads this journal as it is${aside}`];
  }
  throw new UsageError(`unknown journal command ${JSON.stringify(sub ?? "")}: use check, reset or adopt`);
}
