import { assertBatch, assertKey, assertScan, closedError, compareKeys, type Condition, type ScanOptions, type Store, type WriteOp } from "./store.js";

/** A store in memory, for logic that does not need durability (nothing survives the process). */
export function createMemoryStore(): Store {
  const values = new Map<string, Uint8Array>();
  // Keys in byte order, so a scan is a binary search and a walk, as on a real store.
  const keys: string[] = [];
  let closed = false;

  const check = () => {
    if (closed) throw closedError("in memory");
  };
  // The index of the first key not before `key` (or, with `after`, strictly after it).
  const seek = (key: string, after = false) => {
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareKeys(keys[mid]!, key);
      if (c < 0 || (after && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };

  return {
    name: "memory",
    durable: false,
    async write(ops: WriteOp[], conditions: Condition[] = []) {
      check();
      assertBatch(ops, conditions);
      if (conditions.some((c) => values.has(c.key))) return false;
      for (const op of ops) {
        if (op.type === "put") {
          if (!values.has(op.key)) keys.splice(seek(op.key), 0, op.key);
          // Copied, as a durable store would: the caller may reuse its buffer.
          values.set(op.key, op.value.slice());
        } else if (values.delete(op.key)) {
          keys.splice(seek(op.key), 1);
        }
      }
      return true;
    },
    async get(key: string) {
      check();
      assertKey(key);
      return values.get(key)?.slice();
    },
    async scan(prefix: string, options: ScanOptions = {}) {
      check();
      assertScan(prefix, options);
      const limit = options.limit ?? Infinity;
      const { startAfter } = options;
      let i = startAfter !== undefined && compareKeys(startAfter, prefix) >= 0 ? seek(startAfter, true) : seek(prefix);
      const out: Array<[string, Uint8Array]> = [];
      for (; i < keys.length && out.length < limit; i++) {
        const key = keys[i]!;
        // Keys with the prefix are contiguous in byte order: the first without it ends the scan.
        if (!key.startsWith(prefix)) break;
        out.push([key, values.get(key)!.slice()]);
      }
      return out;
    },
    async close() {
      closed = true;
    },
  };
}
