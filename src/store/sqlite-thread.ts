import { Worker } from "node:worker_threads";
import { JournalError } from "./journal-error.js";
import type { SqliteStoreOptions } from "./sqlite-store.js";
import { assertBatch, assertKey, assertScan, closedError, type Condition, type ScanOptions, type Store, type WriteOp } from "./store.js";

/** A request to the journal's thread. */
export type StoreRequest =
  | { id: number; op: "write"; ops: WriteOp[]; conditions: Condition[] }
  | { id: number; op: "get"; key: string }
  | { id: number; op: "scan"; prefix: string; options: ScanOptions }
  | { id: number; op: "close" };

type RequestBody = StoreRequest extends infer R ? (R extends { id: number } ? Omit<R, "id"> : never) : never;

/** Its answer: id 0 answers the open. */
export interface StoreReply {
  id: number;
  value?: unknown;
  error?: { name: string; message: string; code?: string };
}

// Running from the TypeScript sources (tsx, vitest), the worker needs tsx's loader, which a
// worker thread does not inherit; built, it is plain JavaScript beside this file.
function startWorker(options: Omit<SqliteStoreOptions, "secrets">): Worker {
  const here = import.meta.url;
  if (!here.endsWith(".ts")) return new Worker(new URL("./sqlite-thread-worker.js", here), { workerData: options });
  const target = JSON.stringify(new URL("./sqlite-thread-worker.ts", here).href);
  // Resolved here: an eval'd worker resolves bare names from the working directory.
  const tsx = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  return new Worker(`import(${tsx}).then((tsx) => { tsx.register(); return import(${target}); })`, { eval: true, workerData: options });
}

function toError(fields: NonNullable<StoreReply["error"]>): Error {
  const err = fields.name === "JournalError" ? new JournalError(fields.message) : new Error(fields.message);
  if (fields.code) (err as NodeJS.ErrnoException).code = fields.code;
  return err;
}

/**
 * The SQLite journal (sqlite-store.ts) on a thread of its own: a FULL commit's fsync then
 * blocks that thread, not the event loop, so the coordinator goes on taking messages while
 * a commit is in flight, and the next group commit takes everything that arrived meanwhile.
 * A write still resolves only once it is durable. Opening checks the journal as
 * openSqliteStore does and rejects with the same JournalError.
 */
export async function openSqliteThreadStore(options: SqliteStoreOptions): Promise<Store> {
  const { secrets, ...rest } = options;
  const worker = startWorker(rest);
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let next = 1;
  let gone: Error | undefined;
  let closed = false;

  const opened = new Promise<void>((resolve, reject) => waiting.set(0, { resolve: () => resolve(), reject }));
  worker.on("message", (reply: StoreReply) => {
    const w = waiting.get(reply.id);
    if (!w) return;
    waiting.delete(reply.id);
    if (reply.error) w.reject(toError(reply.error));
    else w.resolve(reply.value);
  });
  const fail = (err: Error) => {
    gone ??= err;
    for (const w of waiting.values()) w.reject(gone);
    waiting.clear();
  };
  worker.on("error", (err) => fail(new Error(`the journal's thread failed: ${err.message}`)));
  worker.on("exit", (code) => fail(new Error(`the journal's thread exited (code ${code})`)));
  try {
    await opened;
  } catch (err) {
    await worker.terminate();
    throw err;
  }

  // The thread keeps the process alive only while a call waits on it (an idle journal must
  // not hold a process open; a pending write must).
  worker.unref();
  const call = <T>(req: RequestBody): Promise<T> => {
    if (closed) return Promise.reject(closedError(options.path));
    if (gone) return Promise.reject(gone);
    const id = next++;
    if (waiting.size === 0) worker.ref();
    return new Promise<T>((resolve, reject) => {
      waiting.set(id, {
        resolve: (v) => (settle(id), resolve(v as T)),
        reject: (e) => (settle(id), reject(e)),
      });
      worker.postMessage({ ...req, id });
    });
  };
  const settle = (id: number) => {
    waiting.delete(id);
    if (waiting.size === 0) worker.unref();
  };

  return {
    name: options.path,
    durable: true,
    ...(secrets ? { secrets } : {}),
    // Checked here too, so a bad call fails before anything crosses to the thread.
    async write(ops: WriteOp[], conditions: Condition[] = []) {
      if (!closed) assertBatch(ops, conditions);
      return call<boolean>({ op: "write", ops, conditions });
    },
    async get(key: string) {
      if (!closed) assertKey(key);
      return call<Uint8Array | undefined>({ op: "get", key });
    },
    async scan(prefix: string, scanOptions: ScanOptions = {}) {
      if (!closed) assertScan(prefix, scanOptions);
      return call<Array<[string, Uint8Array]>>({ op: "scan", prefix, options: scanOptions });
    },
    async close() {
      if (closed) return;
      const done = call<void>({ op: "close" });
      closed = true;
      try {
        await done;
      } finally {
        await worker.terminate();
      }
    },
  };
}
