import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { FORMAT_VERSION, HEADER_TABLE, inspectJournal, journalFiles } from "./journal-check.js";
import { JournalError } from "./journal-error.js";
import { JournalStateFile, newJournalId, writeJournalState } from "./journal-state.js";
import type { SecretBox } from "./secret-box.js";
import { assertBatch, assertKey, assertScan, closedError, compareKeys, type Condition, type ScanOptions, type Store, type WriteOp } from "./store.js";

/** Options of openSqliteStore. */
export interface SqliteStoreOptions {
  /** The database file; its folder is made (mode 0700) if missing. */
  path: string;
  /** FULL (default): an acknowledged write survives power loss. NORMAL: it survives a process crash only. */
  synchronous?: "FULL" | "NORMAL";
  /** The journal's state file (journal-state.ts). Default: beside `path`, ".sqlite" replaced by ".state". */
  statePath?: string;
  /** Seals secrets before they rest here; without it, records with secrets are refused. */
  secrets?: SecretBox;
}

type Row = { key: string; value: Buffer };

// How long a call waits for another connection's lock (a backup tool, an inspecting CLI) before failing.
const BUSY_TIMEOUT_MS = 5000;

// The smallest key above every key that starts with prefix, in UTF-8 byte order
// (undefined when there is none: the empty prefix, or one made only of U+10FFFF).
// Incrementing the last UTF-16 code unit is not enough: it can split a surrogate pair.
function prefixUpperBound(prefix: string): string | undefined {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) return points.join("") + String.fromCodePoint(last === 0xd7ff ? 0xe000 : last + 1);
  }
  return undefined;
}

/**
 * The embedded journal: better-sqlite3 in WAL mode, one table of keys and blobs. Each
 * write is one transaction, so a batch is all or nothing and, once the promise
 * resolves, durable. Calls run synchronously on the caller's thread: a FULL write
 * blocks the event loop for one fsync.
 *
 * Every transaction also counts itself in the journal's header, and the state file beside
 * it records the last count acknowledged, so opening checks (journal-check.ts) that this is
 * the journal the directory wrote, whole: a damaged or shortened one throws a JournalError
 * instead of serving what is left. The caller holds the data directory (dir-lock.ts).
 */
export function openSqliteStore(options: SqliteStoreOptions): Store {
  const synchronous = options.synchronous ?? "FULL";
  // Interpolated into a pragma below, so checked here rather than trusted.
  if (synchronous !== "FULL" && synchronous !== "NORMAL") throw new Error(`synchronous must be "FULL" or "NORMAL", got ${JSON.stringify(synchronous)}`);

  mkdirSync(dirname(options.path), { recursive: true, mode: 0o700 });
  const files = journalFiles(options.path, options.statePath);
  // Read-only first: a journal that fails the check keeps its data as it was found (SQLite may
  // add the -shm index, and an empty -wal where one was missing).
  const found = inspectJournal(files);
  // better-sqlite3's timeout is SQLite's busy_timeout, set before the first pragma, which may wait too.
  const db = new Database(options.path, { timeout: BUSY_TIMEOUT_MS });
  let state: JournalStateFile;
  let commit: number;
  try {
    const mode = db.pragma("journal_mode = WAL", { simple: true });
    // Some file systems (network mounts) refuse WAL; the durability claims above assume it.
    if (mode !== "wal") throw new Error(`the store ${options.path} could not use WAL (journal_mode is ${String(mode)})`);
    db.pragma(`synchronous = ${synchronous}`);
    db.exec("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID");
    db.exec(`CREATE TABLE IF NOT EXISTS ${HEADER_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), format INTEGER NOT NULL, journal_id TEXT NOT NULL, commit_count INTEGER NOT NULL)`);
    db.prepare(`INSERT INTO ${HEADER_TABLE} (id, format, journal_id, commit_count) VALUES (1, ?, ?, 0) ON CONFLICT (id) DO NOTHING`).run(FORMAT_VERSION, newJournalId());
    const header = db.prepare<[], { journal_id: string; commit_count: number }>(`SELECT journal_id, commit_count FROM ${HEADER_TABLE} WHERE id = 1`).get()!;
    // What the read-only check saw is what this connection sees (the lock keeps other writers out).
    if (found.kind === "sound" && (header.journal_id !== found.journalId || header.commit_count < found.commit)) {
      throw new JournalError(`the journal ${options.path} changed while it was opened (another writer?)`);
    }
    commit = header.commit_count;
    // Rewritten whole at every open: a new or adopted journal gets its first state here.
    writeJournalState(files.state, { journalId: header.journal_id, commit });
    state = new JournalStateFile(files.state, header.journal_id);
  } catch (err) {
    db.close();
    throw err;
  }

  const put = db.prepare<[string, Buffer]>("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  const del = db.prepare<[string]>("DELETE FROM kv WHERE key = ?");
  const get = db.prepare<[string], { value: Buffer }>("SELECT value FROM kv WHERE key = ?");
  const exists = db.prepare<[string], { one: number }>("SELECT 1 AS one FROM kv WHERE key = ?");
  // TEXT under the BINARY collation compares UTF-8 bytes (the database's encoding), the
  // order of compareKeys. One lower bound per query, so the primary key's range seek
  // starts at the page rather than at the prefix (paging stays linear).
  const scans = {
    from: db.prepare<[string, number], Row>("SELECT key, value FROM kv WHERE key >= ? ORDER BY key LIMIT ?"),
    after: db.prepare<[string, number], Row>("SELECT key, value FROM kv WHERE key > ? ORDER BY key LIMIT ?"),
    fromBelow: db.prepare<[string, string, number], Row>("SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ?"),
    afterBelow: db.prepare<[string, string, number], Row>("SELECT key, value FROM kv WHERE key > ? AND key < ? ORDER BY key LIMIT ?"),
  };

  const bump = db.prepare<[], number>(`UPDATE ${HEADER_TABLE} SET commit_count = commit_count + 1 WHERE id = 1 RETURNING commit_count`).pluck();

  // False when a condition fails; else the commit count after the batch. The count is
  // bumped in the same transaction as the ops, so it is exactly the commits the file holds.
  const apply = db.transaction((ops: WriteOp[], conditions: Condition[]): number | false => {
    for (const c of conditions) if (exists.get(c.key)) return false;
    if (ops.length === 0) return commit;
    for (const op of ops) {
      if (op.type === "put") put.run(op.key, Buffer.from(op.value.buffer, op.value.byteOffset, op.value.byteLength));
      else del.run(op.key);
    }
    return bump.get()!;
  });

  let closed = false;
  const check = () => {
    if (closed) throw closedError(options.path);
  };
  // A plain Uint8Array, as the interface promises. better-sqlite3 gives each BLOB its own
  // ArrayBuffer, so a view over it is safe; copy only if that ever changes (a pooled slab).
  const bytes = (b: Buffer) => (b.byteOffset === 0 && b.buffer.byteLength === b.byteLength ? new Uint8Array(b.buffer) : new Uint8Array(b));

  return {
    name: options.path,
    durable: true,
    ...(options.secrets ? { secrets: options.secrets } : {}),
    async write(ops: WriteOp[], conditions: Condition[] = []) {
      check();
      assertBatch(ops, conditions);
      // IMMEDIATE takes the write lock before the conditions are read: a deferred
      // transaction that reads then writes fails at once (SQLITE_BUSY) if another
      // connection wrote in between, without waiting for busy_timeout.
      const after = apply.immediate(ops, conditions);
      if (after === false) return false;
      if (after !== commit) {
        commit = after;
        // After the commit is durable, never before: the state may lag the journal, not lead it.
        state.record(commit);
      }
      return true;
    },
    async get(key: string) {
      check();
      assertKey(key);
      const row = get.get(key);
      return row ? bytes(row.value) : undefined;
    },
    async scan(prefix: string, scan: ScanOptions = {}) {
      check();
      assertScan(prefix, scan);
      // SQLite reads a negative LIMIT as no limit.
      const limit = scan.limit ?? -1;
      const upper = prefixUpperBound(prefix);
      const after = scan.startAfter !== undefined && compareKeys(scan.startAfter, prefix) >= 0 ? scan.startAfter : undefined;
      let rows: Row[];
      if (after !== undefined) rows = upper === undefined ? scans.after.all(after, limit) : scans.afterBelow.all(after, upper, limit);
      else rows = upper === undefined ? scans.from.all(prefix, limit) : scans.fromBelow.all(prefix, upper, limit);
      return rows.map((r): [string, Uint8Array] => [r.key, bytes(r.value)]);
    },
    async close() {
      if (closed) return;
      closed = true;
      // Checkpoints the WAL into the database file and removes it.
      db.close();
      try {
        state.record(commit, true);
      } finally {
        state.close();
      }
    },
  };
}
