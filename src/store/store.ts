import type { SecretBox } from "./secret-box.js";

// The journal's contract, kept to what etcd can do in one Txn (compares, then puts and
// deletes), so an etcd implementation can follow without changing callers.

/** One change in an atomic batch. */
export type WriteOp = { type: "put"; key: string; value: Uint8Array } | { type: "delete"; key: string };

/** A precondition of a batch: the key must be absent (etcd: `create_revision == 0`). */
export type Condition = { key: string; absent: true };

/** Paging of a scan. */
export interface ScanOptions {
  /** Only keys strictly after this one (the last key of the previous page). */
  startAfter?: string;
  /** At most this many entries (a non-negative integer); all when absent. */
  limit?: number;
}

/**
 * The coordinator's durable journal: keys are strings ("task/<id>", "directive/<id>"),
 * values opaque bytes. Keys are ordered by their UTF-8 bytes, as etcd orders its keys.
 */
export interface Store {
  /** Applies every op atomically and durably, if every condition holds; false (and nothing written) when one does not. */
  write(ops: WriteOp[], conditions?: Condition[]): Promise<boolean>;
  /** The value under key, or undefined. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Entries whose key starts with prefix, in key order (byte order), after startAfter, at most limit. */
  scan(prefix: string, options?: ScanOptions): Promise<Array<[string, Uint8Array]>>;
  /** Flushes and closes; later calls reject. */
  close(): Promise<void>;
  /** Where the data rests, for messages (a file; "memory"). */
  readonly name?: string;
  /** False when nothing outlives the process (memory), so secrets need no sealing; a store that does not say is durable. */
  readonly durable?: boolean;
  /** Seals secrets (a task's sensitive_input) before they rest here; absent when no key was given. */
  readonly secrets?: SecretBox;
}

/** The longest key, in UTF-8 bytes (etcd allows more; 1 KiB keeps SQLite's index pages dense). */
export const MAX_KEY_BYTES = 1024;

// With the u flag a surrogate class matches only unpaired surrogates (String#isWellFormed is ES2024).
const LONE_SURROGATE = /[\ud800-\udfff]/u;

/** Throws unless key is a non-empty, well-formed string of at most MAX_KEY_BYTES UTF-8 bytes. */
export function assertKey(key: string): void {
  if (typeof key !== "string" || key.length === 0) throw new Error("store keys must be non-empty strings");
  // A lone surrogate has no UTF-8 form: SQLite would store U+FFFD and the key would change.
  if (LONE_SURROGATE.test(key)) throw new Error(`store key ${JSON.stringify(key.slice(0, 40))} is not well-formed Unicode`);
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new Error(`store key longer than ${MAX_KEY_BYTES} bytes: ${JSON.stringify(key.slice(0, 40))}…`);
}

/** Throws unless every op and condition is well formed, before anything is written. */
export function assertBatch(ops: WriteOp[], conditions: Condition[]): void {
  for (const op of ops) {
    assertKey(op.key);
    if (op.type === "put") {
      if (!(op.value instanceof Uint8Array)) throw new Error(`store value for ${JSON.stringify(op.key)} must be a Uint8Array`);
    } else if (op.type !== "delete") {
      throw new Error(`unknown store op ${JSON.stringify((op as { type: unknown }).type)}`);
    }
  }
  for (const c of conditions) {
    assertKey(c.key);
    if (c.absent !== true) throw new Error(`store condition on ${JSON.stringify(c.key)} must be { absent: true }`);
  }
}

/** Throws unless a scan's prefix and options are usable (the prefix may be empty: every key). */
export function assertScan(prefix: string, options: ScanOptions): void {
  if (typeof prefix !== "string" || LONE_SURROGATE.test(prefix)) throw new Error("store scan prefix must be a well-formed string");
  if (options.startAfter !== undefined && (typeof options.startAfter !== "string" || LONE_SURROGATE.test(options.startAfter))) {
    throw new Error("store scan startAfter must be a well-formed string");
  }
  if (options.limit !== undefined && !(Number.isSafeInteger(options.limit) && options.limit >= 0)) {
    throw new Error(`store scan limit must be a non-negative integer, got ${options.limit}`);
  }
}

/**
 * Orders well-formed strings by code point, which is their UTF-8 byte order (SQLite's
 * BINARY collation, etcd's key order); `<` on strings compares UTF-16 code units, which
 * puts U+E000..U+FFFF after the astral planes.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

// Moves surrogates (astral code points) above U+E000..U+FFFF, keeping each group's order.
function codePointRank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

/** The error every call on a closed store rejects with. */
export function closedError(name: string): Error {
  return new Error(`the store ${name} is closed`);
}
