import { parentPort, workerData } from "node:worker_threads";
import { openSqliteStore, type SqliteStoreOptions } from "./sqlite-store.js";
import type { Store } from "./store.js";
import { decodeBatch, type StoreReply, type StoreRequest } from "./sqlite-thread.js";

// The SQLite journal's own thread (see sqlite-thread.ts): it opens the store, then runs
// the requests in the order they come, one at a time, each answered once done (a write
// once it is durable). Its errors go back as plain fields, since an Error's class does
// not survive postMessage.

const port = parentPort!;
const options = workerData as Omit<SqliteStoreOptions, "secrets">;

function errorFields(err: unknown): StoreReply["error"] {
  const e = err as NodeJS.ErrnoException;
  return { name: e?.name ?? "Error", message: e?.message ?? String(err), ...(e?.code ? { code: String(e.code) } : {}) };
}

let store: Store;
try {
  store = openSqliteStore(options);
} catch (err) {
  port.postMessage({ id: 0, error: errorFields(err) } satisfies StoreReply);
  process.exit(0);
}
port.postMessage({ id: 0, value: true } satisfies StoreReply);

let queue: Promise<void> = Promise.resolve();
port.on("message", (req: StoreRequest) => {
  queue = queue.then(async () => {
    try {
      let value: unknown;
      if (req.op === "write") {
        const { ops, conditions } = decodeBatch(req.batch);
        value = await store.write(ops, conditions);
      }
      else if (req.op === "get") value = await store.get(req.key);
      else if (req.op === "scan") value = await store.scan(req.prefix, req.options);
      else value = await store.close();
      port.postMessage({ id: req.id, value } satisfies StoreReply);
    } catch (err) {
      port.postMessage({ id: req.id, error: errorFields(err) } satisfies StoreReply);
    }
    if (req.op === "close") port.close();
  });
});
