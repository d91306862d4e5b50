import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import type { Condition, ScanOptions, Store, WriteOp } from "./store.js";

/** Options of openSqliteStore. */
export interface SqliteStoreOptions {
  /** The database file; its folder is made (0700) if missing. */
  path: string;
  /** FULL (default) survives power loss; NORMAL, in WAL mode, survives a process crash. */
  synchronous?: "FULL" | "NORMAL";
}

const MAX_KEY_BYTES = 1024;

function checkKey(key: string): void {
  if (typeof key !== "string" || key.length === 0) throw new Error("store keys must be non-empty strings");
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new Error(`store key longer than ${MAX_KEY_BYTES} bytes: ${key.slice(0, 40)}…`);
}

/** The smallest string greater than every string that starts with `prefix` (undefined: no bound). */
function upperBound(prefix: string): string | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const code = prefix.charCodeAt(i);
    if (code < 0xffff) return prefix.slice(0, i) + String.fromCharCode(code + 1);
  }
  return undefined;
}

/**
 * The embedded journal: better-sqlite3 in WAL mode, one table of keys and blobs. Each
 * write is one transaction, so a batch is all or nothing and, once the promise
 * resolves, durable.
 */
export function openSqliteStore(options: SqliteStoreOptions): Store {
  mkdirSync(dirname(options.path), { recursive: true, mode: 0o700 });
  const db = new Database(options.path);
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${options.synchronous ?? "FULL"}`);
  db.pragma("busy_timeout = 5000");
  db.exec("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID");
  const put = db.prepare("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  const del = db.prepare("DELETE FROM kv WHERE key = ?");
  const get = db.prepare<[string], { value: Buffer }>("SELECT value FROM kv WHERE key = ?");
  const exists = db.prepare<[string], { one: number }>("SELECT 1 AS one FROM kv WHERE key = ?");
  const scanBounded = db.prepare<[string, string, string, number], { key: string; value: Buffer }>("SELECT key, value FROM kv WHERE key >= ? AND key < ? AND key > ? ORDER BY key LIMIT ?");
  const scanOpen = db.prepare<[string, string, number], { key: string; value: Buffer }>("SELECT key, value FROM kv WHERE key >= ? AND key > ? ORDER BY key LIMIT ?");
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
    if (closed) throw new Error(`the store ${options.path} is closed`);
  };
  const copy = (b: Buffer) => new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  return {
    async write(ops, conditions = []) {
      check();
      for (const op of ops) checkKey(op.key);
      return apply(ops, conditions);
    },
    async get(key) {
      check();
      checkKey(key);
      const row = get.get(key);
      return row ? copy(row.value) : undefined;
    },
    async scan(prefix: string, scan: ScanOptions = {}) {
      check();
      const limit = scan.limit ?? -1;
      const after = scan.startAfter ?? "";
      const upper = upperBound(prefix);
      // SQLite compares TEXT with memcmp (BINARY collation): the same order as the bounds above for UTF-16 keys below U+D800.
      const rows = upper === undefined ? scanOpen.all(prefix, after, limit) : scanBounded.all(prefix, upper, after, limit);
      return rows.filter((r) => r.key.startsWith(prefix)).map((r) => [r.key, copy(r.value)] as [string, Uint8Array]);
    },
    async close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}
