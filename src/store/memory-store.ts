import type { Condition, ScanOptions, Store, WriteOp } from "./store.js";

/** A store in memory, for logic that does not need durability (nothing survives the process). */
export function createMemoryStore(): Store {
  const data = new Map<string, Uint8Array>();
  let closed = false;
  const check = () => {
    if (closed) throw new Error("the store is closed");
  };
  return {
    async write(ops: WriteOp[], conditions: Condition[] = []) {
      check();
      if (conditions.some((c) => data.has(c.key))) return false;
      for (const op of ops) {
        if (op.type === "put") data.set(op.key, op.value.slice());
        else data.delete(op.key);
      }
      return true;
    },
    async get(key) {
      check();
      return data.get(key)?.slice();
    },
    async scan(prefix: string, options: ScanOptions = {}) {
      check();
      const keys = [...data.keys()].filter((k) => k.startsWith(prefix) && (options.startAfter === undefined || k > options.startAfter)).sort();
      return keys.slice(0, options.limit ?? keys.length).map((k) => [k, data.get(k)!.slice()] as [string, Uint8Array]);
    },
    async close() {
      closed = true;
    },
  };
}
