import { existsSync, mkdirSync, renameSync } from "node:fs";
import { basename, join } from "node:path";
import type { BatonConfig } from "../config.js";
import { lockDirectory } from "./dir-lock.js";
import { inspectJournal, journalFiles, type Inspection, type JournalFiles } from "./journal-check.js";
import { JournalError } from "./journal-error.js";
import { syncFolder, writeJournalState } from "./journal-state.js";
import { JOURNAL_FILE } from "./open-store.js";

// What `baton journal check|reset|adopt` do, each holding the data directory so no server
// runs meanwhile. Nothing is ever deleted: reset and adopt move files into a folder
// "journal-aside-<time>" in the data directory, for a restore or a post-mortem.

/** What a journal command found or did. */
export interface JournalReport {
  files: JournalFiles;
  /** What the check found (before the command's change). */
  inspection: Inspection;
  /** Files moved aside, by name, and where to. */
  moved?: { names: string[]; to: string };
}

function filesOf(config: BatonConfig): JournalFiles {
  if (config.store.kind !== "sqlite") throw new JournalError(`store.kind is ${JSON.stringify(config.store.kind)}: there is no journal on disk`);
  return journalFiles(join(config.store.dataDir, JOURNAL_FILE));
}

function holding<T>(config: BatonConfig, fn: (files: JournalFiles) => T): T {
  const files = filesOf(config);
  if (!existsSync(config.store.dataDir)) throw new JournalError(`store.dataDir ${config.store.dataDir} does not exist: there is no journal there`);
  const lock = lockDirectory(config.store.dataDir);
  try {
    return fn(files);
  } finally {
    lock.release();
  }
}

function moveAside(files: JournalFiles, which: Array<keyof JournalFiles>): { names: string[]; to: string } {
  const present = which.map((k) => files[k]).filter((p) => existsSync(p));
  if (present.length === 0) return { names: [], to: "" };
  const to = join(files.db, "..", `journal-aside-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  mkdirSync(to, { mode: 0o700 });
  for (const path of present) renameSync(path, join(to, basename(path)));
  syncFolder(join(files.db, ".."));
  return { names: present.map((p) => basename(p)), to };
}

/** Checks the configured journal as a start would (quick_check, header against state); a JournalError when it would refuse. */
export function checkJournal(config: BatonConfig): JournalReport {
  return holding(config, (files) => ({ files, inspection: inspectJournal(files) }));
}

/** Moves the journal's files aside, so the next start begins a new journal; a sound journal only with `force`. */
export function resetJournal(config: BatonConfig, options: { force?: boolean } = {}): JournalReport {
  return holding(config, (files) => {
    let inspection: Inspection | undefined;
    try {
      inspection = inspectJournal(files);
    } catch (err) {
      if (!(err instanceof JournalError)) throw err;
    }
    if (inspection && inspection.kind !== "new" && !options.force) {
      throw new JournalError(`the journal ${files.db} is sound: reset would set aside every task it holds; add --force to do it anyway`);
    }
    return { files, inspection: inspection ?? { kind: "new", state: undefined }, moved: moveAside(files, ["db", "wal", "shm", "state"]) };
  });
}

/**
 * Accepts the journal as it is now (a deliberate restore of an older copy, or the writes a
 * power loss took with synchronous NORMAL): the state file is set aside and rewritten from
 * the journal's own header. A journal with damaged pages cannot be adopted.
 */
export function adoptJournal(config: BatonConfig): JournalReport {
  return holding(config, (files) => {
    const inspection = inspectJournal(files, { ignoreState: true });
    const moved = moveAside(files, ["state"]);
    if (inspection.kind === "sound") writeJournalState(files.state, { journalId: inspection.journalId, commit: inspection.commit });
    return { files, inspection, moved };
  });
}
