import { existsSync, statSync } from "node:fs";
import Database from "better-sqlite3";
import { JournalError, RECOVERY_HINT } from "./journal-error.js";
import { readJournalState, type JournalState } from "./journal-state.js";

/** The journal header's table: one row, written in the same transaction as every commit. */
export const HEADER_TABLE = "journal_header";
/** The layout of the journal this code writes; a higher one was written by a newer baton. */
export const FORMAT_VERSION = 1;

/** The files of one SQLite journal. */
export interface JournalFiles {
  db: string;
  wal: string;
  shm: string;
  /** The state file (journal-state.ts): which journal this is and its last acknowledged commit. */
  state: string;
}

/** The files of the journal at `path` ("data/journal.sqlite" has its state in "data/journal.state"). */
export function journalFiles(path: string, statePath?: string): JournalFiles {
  return { db: path, wal: `${path}-wal`, shm: `${path}-shm`, state: statePath ?? `${path.replace(/\.sqlite$/, "")}.state` };
}

/** What inspecting a journal found; anything else is a JournalError. */
export type Inspection =
  /** No journal yet, or one that never acknowledged a commit. */
  | { kind: "new"; state: JournalState | undefined }
  /** Written before journals had a header (or by nothing but the schema): adopted as it is. */
  | { kind: "legacy"; records: Map<string, number> }
  /** The journal the state file records, with every acknowledged commit. */
  | { kind: "sound"; journalId: string; commit: number; state: JournalState | undefined; records: Map<string, number> };

type Header = { format: number; journal_id: string; commit_count: number };

// How long the read-only check waits for a lock held by another connection.
const BUSY_TIMEOUT_MS = 5000;

function size(path: string): number | undefined {
  return existsSync(path) ? statSync(path).size : undefined;
}

/**
 * Checks a journal before it is opened for writing, through a read-only connection, so a
 * damaged one keeps its data as it was found: SQLite's quick_check, then its header against the
 * state file (unless `ignoreState`: adopting the journal as it is). Throws a JournalError
 * naming the file, what is wrong and the way out.
 */
export function inspectJournal(files: JournalFiles, options: { ignoreState?: boolean } = {}): Inspection {
  const state = options.ignoreState ? undefined : readJournalState(files.state);
  const bytes = size(files.db);
  if (!bytes) {
    // A state at commit 0 acknowledged nothing: a first start that stopped half-way.
    if (state && state.commit > 0) {
      throw new JournalError(`the journal ${files.db} is empty (${bytes === undefined ? "missing" : "0 bytes"}), but ${files.state} records journal ${state.journalId} at commit ${state.commit}: the journal lost its data; ${RECOVERY_HINT}`);
    }
    return { kind: "new", state };
  }
  let db: Database.Database;
  try {
    db = new Database(files.db, { readonly: true, fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    throw new JournalError(`the journal ${files.db} cannot be opened: ${(err as Error).message}`);
  }
  let header: Header | undefined;
  let records: Map<string, number>;
  try {
    const problems = (db.pragma("quick_check(20)") as Array<{ quick_check: string }>).map((r) => r.quick_check).filter((m) => m !== "ok");
    if (problems.length > 0) throw new JournalError(`the journal ${files.db} is damaged (SQLite quick_check: ${problems.join("; ")}); ${RECOVERY_HINT}`);
    const tables = new Set(db.prepare<[], string>("SELECT name FROM sqlite_schema WHERE type = 'table'").pluck().all());
    if (tables.has(HEADER_TABLE)) header = db.prepare<[], Header>(`SELECT format, journal_id, commit_count FROM ${HEADER_TABLE} WHERE id = 1`).get();
    records = new Map();
    if (tables.has("kv")) {
      // Records by kind: the text up to the first "/" of the key ("task/", "directive/").
      for (const row of db.prepare<[], { kind: string; n: number }>("SELECT substr(key, 1, instr(key, '/')) AS kind, count(*) AS n FROM kv GROUP BY kind").all()) records.set(row.kind, row.n);
    }
  } catch (err) {
    if (err instanceof JournalError) throw err;
    throw new JournalError(`the journal ${files.db} is damaged: ${(err as Error).message}; ${RECOVERY_HINT}`);
  } finally {
    db.close();
  }
  if (!header) {
    if (state && state.commit > 0) {
      throw new JournalError(
        `the journal ${files.db} lost committed writes: it has no journal header, but ${files.state} records journal ${state.journalId} at commit ${state.commit} ` +
          `(its WAL ${files.wal} was deleted or damaged before the header reached the file, or it was emptied or replaced); ${RECOVERY_HINT}`,
      );
    }
    return { kind: "legacy", records };
  }
  if (header.format > FORMAT_VERSION) throw new JournalError(`the journal ${files.db} has format ${header.format}, written by a newer baton (this one reads format ${FORMAT_VERSION})`);
  const found = `journal ${header.journal_id} at commit ${header.commit_count}`;
  if (!state) {
    if (header.commit_count === 0 || options.ignoreState) return { kind: "sound", journalId: header.journal_id, commit: header.commit_count, state, records };
    throw new JournalError(`the journal state ${files.state} is missing: nothing says whether ${files.db} (${found}) is the journal this data directory last wrote (a copy restored or moved here?); ${RECOVERY_HINT}`);
  }
  if (state.commit > 0 && state.journalId !== header.journal_id) {
    throw new JournalError(`the journal ${files.db} is ${found}, but ${files.state} records journal ${state.journalId}: it was replaced by another journal; ${RECOVERY_HINT}`);
  }
  if (header.commit_count < state.commit) {
    throw new JournalError(
      `the journal ${files.db} lost committed writes: it holds ${found}, but ${files.state} records that commit ${state.commit} was acknowledged ` +
        `(its WAL ${files.wal} was deleted, truncated or damaged, or an older copy of the journal was restored); ${RECOVERY_HINT}`,
    );
  }
  return { kind: "sound", journalId: header.journal_id, commit: header.commit_count, state, records };
}
