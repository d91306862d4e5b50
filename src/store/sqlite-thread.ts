import { Worker } from "node:worker_threads";
import { JournalError } from "./journal-error.js";
import type { SqliteStoreOptions } from "./sqlite-store.js";
import { assertBatch, assertKey, assertScan, closedError, type Condition, type ScanOptions, type Store, type WriteOp } from "./store.js";

/** A request to the journal's thread; a write's ops and conditions travel as one transferred buffer (encodeBatch). */
export type StoreRequest =
  | { id: number; op: "write"; batch: Uint8Array }
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

// A batch as bytes: per entry a tag (0 put, 1 delete, 2 absent), the key's UTF-8 length
// and bytes, and for a put the value's length and bytes. Cloning an array of objects with
// typed arrays for postMessage cost more than the commit's own work; one buffer is moved.
const PUT = 0;
const DELETE = 1;
const ABSENT = 2;

/** Encodes a write's ops and conditions into one buffer, to be transferred. */
export function encodeBatch(ops: WriteOp[], conditions: Condition[]): Uint8Array {
  const keys = [...ops.map((o) => Buffer.from(o.key)), ...conditions.map((c) => Buffer.from(c.key))];
  let size = 0;
  ops.forEach((o, i) => (size += 5 + keys[i]!.length + (o.type === "put" ? 4 + o.value.byteLength : 0)));
  for (let i = ops.length; i < keys.length; i++) size += 5 + keys[i]!.length;
  const out = Buffer.allocUnsafeSlow(size);
  let at = 0;
  const entry = (tag: number, key: Buffer) => {
    out[at] = tag;
    out.writeUInt32LE(key.length, at + 1);
    key.copy(out, at + 5);
    at += 5 + key.length;
  };
  ops.forEach((o, i) => {
    entry(o.type === "put" ? PUT : DELETE, keys[i]!);
    if (o.type !== "put") return;
    out.writeUInt32LE(o.value.byteLength, at);
    out.set(o.value, at + 4);
    at += 4 + o.value.byteLength;
  });
  for (let i = ops.length; i < keys.length; i++) entry(ABSENT, keys[i]!);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** The ops and conditions encodeBatch encoded. */
export function decodeBatch(bytes: Uint8Array): { ops: WriteOp[]; conditions: Condition[] } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ops: WriteOp[] = [];
  const conditions: Condition[] = [];
  let at = 0;
  while (at < buf.length) {
    const tag = buf[at]!;
    const keyLength = buf.readUInt32LE(at + 1);
    const key = buf.toString("utf8", at + 5, at + 5 + keyLength);
    at += 5 + keyLength;
    if (tag === PUT) {
      const valueLength = buf.readUInt32LE(at);
      ops.push({ type: "put", key, value: bytes.subarray(at + 4, at + 4 + valueLength) });
      at += 4 + valueLength;
    } else if (tag === DELETE) ops.push({ type: "delete", key });
    else conditions.push({ key, absent: true });
  }
  return { ops, conditions };
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
 * openSqliteStore does and rejects with the same JournalError. `observe.onThread` is told
 * of each thread started (tests, diagnostics).
 */
export async function openSqliteThreadStore(options: SqliteStoreOptions, observe: { onThread?: (worker: Worker) => void } = {}): Promise<Store> {
  const { secrets, ...rest } = options;
  let closed = false;
  let next = 1;

  /** One journal thread: its worker, its calls waiting, and why it is gone (if it is). */
  interface Thread {
    worker: Worker;
    waiting: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
    gone?: Error;
  }

  // Starts a thread and waits for it to open the journal (checked whole, as at start).
  async function spawn(): Promise<Thread> {
    const thread: Thread = { worker: startWorker(rest), waiting: new Map() };
    observe.onThread?.(thread.worker);
    const { worker, waiting } = thread;
    const opened = new Promise<void>((resolve, reject) => waiting.set(0, { resolve: () => resolve(), reject }));
    worker.on("message", (reply: StoreReply) => {
      const w = waiting.get(reply.id);
      if (!w) return;
      waiting.delete(reply.id);
      if (reply.error) w.reject(toError(reply.error));
      else w.resolve(reply.value);
    });
    const fail = (err: Error) => {
      thread.gone ??= err;
      for (const w of [...waiting.values()]) w.reject(thread.gone);
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
    return thread;
  }

  let current: Promise<Thread> = spawn();
  await current;

  // A thread that died (it should not: its calls catch their own errors) fails the calls it
  // had; the next call starts another, which opens the journal again, so the coordinator's
  // journal recovery can find it writable instead of probing a dead thread forever.
  const threadFor = async (): Promise<Thread> => {
    const seen = current;
    const thread = await seen.catch(() => undefined);
    if (thread && !thread.gone) return thread;
    // One respawn for every call that found the same dead thread (or failed start).
    if (current === seen) current = spawn();
    return current;
  };

  const call = async <T>(req: RequestBody): Promise<T> => {
    if (closed && req.op !== "close") throw closedError(options.path);
    const thread = await threadFor();
    const { worker, waiting } = thread;
    const id = next++;
    if (waiting.size === 0) worker.ref();
    const settle = () => {
      waiting.delete(id);
      if (waiting.size === 0) worker.unref();
    };
    return new Promise<T>((resolve, reject) => {
      waiting.set(id, {
        resolve: (v) => (settle(), resolve(v as T)),
        reject: (e) => (settle(), reject(e)),
      });
      if (req.op === "write") worker.postMessage({ ...req, id }, [req.batch.buffer as ArrayBuffer]);
      else worker.postMessage({ ...req, id });
    });
  };

  return {
    name: options.path,
    durable: true,
    ...(secrets ? { secrets } : {}),
    // Checked here too, so a bad call fails before anything crosses to the thread.
    async write(ops: WriteOp[], conditions: Condition[] = []) {
      if (!closed) assertBatch(ops, conditions);
      return call<boolean>({ op: "write", batch: encodeBatch(ops, conditions) });
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
      closed = true;
      const thread = await current.catch(() => undefined);
      if (!thread) return;
      try {
        if (!thread.gone) await call<void>({ op: "close" });
      } finally {
        await thread.worker.terminate();
      }
    },
  };
}
