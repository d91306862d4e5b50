import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { assertBatch, assertKey, assertScan, closedError, compareKeys, type Condition, type ScanOptions, type Store, type WriteOp } from "./store.js";

/** Options of openSqliteStore. */
export interface SqliteStoreOptions {
  /** The database file; its folder is made (mode 0700) if missing. */
  path: string;
  /** FULL (default): an acknowledged write survives power loss. NORMAL: it survives a process crash only. */
  synchronous?: "FULL" | "NORMAL";
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
 */
export function openSqliteStore(options: SqliteStoreOptions): Store {
  const synchronous = options.synchronous ?? "FULL";
  // Interpolated into a pragma below, so checked here rather than trusted.
  if (synchronous !== "FULL" && synchronous !== "NORMAL") throw new Error(`synchronous must be "FULL" or "NORMAL", got ${JSON.stringify(synchronous)}`);

  mkdirSync(dirname(options.path), { recursive: true, mode: 0o700 });
  // better-sqlite3's timeout is SQLite's busy_timeout, set before the first pragma, which may wait too.
  const db = new Database(options.path, { timeout: BUSY_TIMEOUT_MS });
  try {
    const mode = db.pragma("journal_mode = WAL", { simple: true });
    // Some file systems (network mounts) refuse WAL; the durability claims above assume it.
    if (mode !== "wal") throw new Error(`the store ${options.path} could not use WAL (journal_mode is ${String(mode)})`);
    db.pragma(`synchronous = ${synchronous}`);
    db.exec("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID");
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

  const apply = db.transaction((ops: WriteOp[], conditions: Condition[]): boolean => {
    for (const c of conditions) if (exists.get(c.key)) return false;
    for (const op of ops) {
      if (op.type === "put") put.run(op.key, Buffer.from(op.value.buffer, op.value.byteOffset, op.value.byteLength));
      else del.run(op.key);
    }
    return true;
  });

  let closed = false;
  const check = () => {
    if (closed) throw closedError(options.path);
  };
  // A plain Uint8Array, as the interface promises. better-sqlite3 gives each BLOB its own
  // ArrayBuffer, so a view over it is safe; copy only if that ever changes (a pooled slab).
  const bytes = (b: Buffer) => (b.byteOffset === 0 && b.buffer.byteLength === b.byteLength ? new Uint8Array(b.buffer) : new Uint8Array(b));

  return {
    async write(ops: WriteOp[], conditions: Condition[] = []) {
      check();
      assertBatch(ops, conditions);
      // IMMEDIATE takes the write lock before the conditions are read: a deferred
      // transaction that reads then writes fails at once (SQLITE_BUSY) if another
      // connection wrote in between, without waiting for busy_timeout.
      return apply.immediate(ops, conditions);
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
    },
  };
}
