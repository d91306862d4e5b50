// The bench's driver: an operator's Control client, submits with a window of calls in
// flight, and a WatchEvents stream that timestamps each task event as it arrives.
import type { DescMethod, MessageInitShape } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { Control, TaskState, type TaskSpecSchema } from "../../gen/baton/v1/control_pb.js";
import { Code } from "../../src/errors.js";
import { clientCredentials, createChannel, createClient, type ServiceClient } from "../../src/rpc/index.js";
import type { BenchPki } from "./pki.js";

/** Task event states the bench waits for (the last segment of task.<id>.<state>). */
export type TaskEventState = "pending" | "assigned" | "running" | "succeeded" | "dead_lettered" | "cancelled";

/** Event arrival times by task and state. */
export class TaskWatch {
  /** taskId -> state -> performance.now() when its event arrived. */
  readonly seen = new Map<string, Map<string, number>>();
  /** Events received by state. */
  readonly counts = new Map<string, number>();
  error: Error | undefined;
  /** Times the watch ended (cut off as too slow, connection dropped) and was resumed. */
  resumes = 0;
  /** Resumes that could not start from the cursor (events no longer retained): events were missed. */
  gaps = 0;
  private waiters = new Map<string, Array<(at: number) => void>>();
  private countWaiters = new Set<() => void>();

  /** Records an event "task.<id>.<state>". */
  record(topic: string, at: number): void {
    const first = topic.indexOf(".");
    const last = topic.lastIndexOf(".");
    if (first < 0 || last <= first || topic.slice(0, first) !== "task") return;
    const id = topic.slice(first + 1, last);
    const state = topic.slice(last + 1);
    let states = this.seen.get(id);
    if (!states) this.seen.set(id, (states = new Map()));
    if (states.has(state)) return;
    states.set(state, at);
    this.counts.set(state, (this.counts.get(state) ?? 0) + 1);
    const key = `${id}\0${state}`;
    for (const w of this.waiters.get(key) ?? []) w(at);
    this.waiters.delete(key);
    for (const w of [...this.countWaiters]) w();
  }

  /** When the task's event in `state` arrived; waits for it (rejects after `timeoutMs`). */
  async when(taskId: string, state: TaskEventState, timeoutMs: number): Promise<number> {
    return (await this.whenAny(taskId, [state], timeoutMs)).at;
  }

  /** The first of the task's events in `states` (rejects after `timeoutMs`). */
  whenAny(taskId: string, states: TaskEventState[], timeoutMs: number): Promise<{ state: TaskEventState; at: number }> {
    const known = this.seen.get(taskId);
    for (const state of states) {
      const at = known?.get(state);
      if (at !== undefined) return Promise.resolve({ state, at });
    }
    return new Promise((resolve, reject) => {
      const keys = states.map((state) => `${taskId}\0${state}`);
      const unregister = () => {
        clearTimeout(timer);
        for (const key of keys) this.waiters.delete(key);
      };
      const timer = setTimeout(() => {
        unregister();
        reject(new Error(`no task.${taskId}.{${states.join(",")}} event within ${timeoutMs} ms${this.error ? ` (watch failed: ${this.error.message})` : ""}`));
      }, timeoutMs);
      states.forEach((state, i) => this.waiters.set(keys[i]!, [(at) => (unregister(), resolve({ state, at }))]));
    });
  }

  /** Resolves true when `n` events in one of `states` have arrived, false at `deadline` (Date.now() ms). */
  whenCount(states: TaskEventState[], n: number, deadline: number): Promise<boolean> {
    const count = () => states.reduce((s, st) => s + (this.counts.get(st) ?? 0), 0);
    if (count() >= n) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => (clearTimeout(timer), this.countWaiters.delete(check), resolve(ok));
      const check = () => count() >= n && done(true);
      const timer = setTimeout(() => done(count() >= n), Math.max(0, deadline - Date.now()));
      this.countWaiters.add(check);
    });
  }
}

/** An operator's connection to the coordinator. */
export interface Driver {
  control: ServiceClient<typeof Control>;
  watch: TaskWatch;
  close(): void;
}

/**
 * Opens a Control client, and a watch on `topics` (e.g. "task.*.succeeded") on a connection
 * of its own, so hundreds of submits in flight never slow the watch into being cut off.
 */
export function openDriver(pki: BenchPki, address: string, topics: string[]): Driver {
  const creds = () => clientCredentials({ ca: readFileSync(pki.caFile), cert: readFileSync(pki.operatorCert), key: readFileSync(pki.operatorKey) });
  const channel = createChannel(address, creds());
  // A subchannel pool of its own: grpc-js would otherwise share one connection between the two.
  const watchChannel = createChannel(address, creds(), { "grpc.use_local_subchannel_pool": 1 });
  const control = createClient(Control, channel);
  const watch = new TaskWatch();
  const abort = new AbortController();
  const watchClient = createClient(Control, watchChannel);
  void (async () => {
    let cursor = 0n;
    for (;;) {
      try {
        for await (const res of watchClient.watchEvents({ topics, afterCursor: cursor }, { signal: abort.signal })) {
          cursor = res.event?.cursor ?? cursor;
          watch.record(res.event?.topic ?? "", performance.now());
        }
        return;
      } catch (err) {
        if (abort.signal.aborted) return;
        const code = (err as { code?: number }).code;
        // A burst of events can overfill the watcher's queue (RESOURCE_EXHAUSTED), a loaded
        // coordinator drop the connection: resume from the cursor, as clients are told to;
        // past the retained events (OUT_OF_RANGE), from now, with a gap.
        // Bounded, and not at once: resuming replays retained events, which costs the coordinator being measured.
        if (watch.resumes++ >= 20) return void (watch.error = err as Error);
        await new Promise((r) => setTimeout(r, 100));
        if (code === Code.OUT_OF_RANGE) (cursor = 0n), watch.gaps++;
        else if (code !== Code.RESOURCE_EXHAUSTED && code !== Code.UNAVAILABLE) return void (watch.error = err as Error);
      }
    }
  })();
  return { control, watch, close: () => (abort.abort(), channel.close(), watchChannel.close()) };
}

/** How many warm-up tasks warmUp may submit; their ids are warmup-0 ... */
export const WARMUPS = 10;

/** Watch patterns that match only the warm-up tasks' events in `state` (a scenario that counts on the agents' side). */
export const warmupTopics = (state: TaskEventState): string[] => Array.from({ length: WARMUPS }, (_, i) => `task.warmup-${i}.${state}`);

/** Submits warm-up tasks until one's event in `state` arrives: the watch is live from then on. */
export async function warmUp(driver: Driver, state: TaskEventState, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (let i = 0; i < WARMUPS; i++) {
    const id = `warmup-${i}`;
    await driver.control.submitTask({ task: benchTask(id) });
    try {
      // A watch that started after this submit misses its event; the next warm-up is after it.
      await driver.watch.when(id, state, Math.max(1000, Math.min(10_000, until - Date.now())));
      return;
    } catch (err) {
      if (Date.now() >= until || driver.watch.error || i === WARMUPS - 1) throw err;
    }
  }
}

/** Tasks in SUCCEEDED whose id starts with `prefix`, with the coordinator's created and updated times (ms since the epoch). */
export async function succeededTasks(control: Driver["control"], prefix: string): Promise<Array<{ id: string; createdMs: number; updatedMs: number }>> {
  const out: Array<{ id: string; createdMs: number; updatedMs: number }> = [];
  const ms = (t: { seconds: bigint; nanos: number } | undefined) => (t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : Number.NaN);
  let pageToken = "";
  do {
    const page = await control.listTasks({ states: [TaskState.SUCCEEDED], pageSize: 1000, pageToken }, { deadline: 60_000 });
    for (const t of page.tasks) if (t.spec?.taskId.startsWith(prefix)) out.push({ id: t.spec.taskId, createdMs: ms(t.createdAt), updatedMs: ms(t.updatedAt) });
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

/** A bench task: no capability needed, a small input. */
export function benchTask(taskId: string, extra: { target?: { agentId: string } } = {}): MessageInitShape<typeof TaskSpecSchema> {
  return { ...extra, taskId, input: { bench: true } };
}

/** What a submission loop got through: tasks accepted, tasks refused, and the last refusal. */
export interface Submitted {
  submitted: number;
  failed: number;
  lastError: string;
}

/** Runs `step` from `window` workers at once while it has work (it returns false when none is left) and the deadline is ahead. */
async function submitting(window: number, deadline: number, step: (tally: Submitted) => Promise<boolean>): Promise<Submitted> {
  const tally: Submitted = { submitted: 0, failed: 0, lastError: "" };
  const worker = async () => {
    while (Date.now() < deadline && (await step(tally)));
  };
  await Promise.all(Array.from({ length: window }, worker));
  return tally;
}

/** Submits tasks with `window` calls in flight until `ids` is exhausted or `deadline` (Date.now() ms). */
export function submitAll(
  control: Driver["control"],
  ids: readonly string[],
  window: number,
  deadline: number,
  spec: (id: string, i: number) => MessageInitShape<typeof TaskSpecSchema> = (id) => benchTask(id),
  submittedAt?: Map<string, number>,
): Promise<Submitted> {
  let next = 0;
  return submitting(Math.min(window, ids.length), deadline, async (tally) => {
    if (next >= ids.length) return false;
    const i = next++;
    const id = ids[i]!;
    submittedAt?.set(id, performance.now());
    try {
      await control.submitTask({ task: spec(id, i) }, { deadline: 60_000 });
      tally.submitted++;
    } catch (err) {
      tally.failed++;
      tally.lastError = (err as Error).message;
    }
    return true;
  });
}

/** Control's bulk submission method and its repeated TaskSpec field. */
export interface BulkMethod {
  method: DescMethod;
  field: string;
}

/** Control's bulk submission method (a SubmitTasks-style call taking a list of TaskSpec), when it has one. */
export function bulkMethod(): BulkMethod | undefined {
  for (const method of Control.methods) {
    if (method.methodKind !== "unary" || !/^(SubmitTasks|BulkSubmit|SubmitBatch)/.test(method.name)) continue;
    const field = method.input.fields.find((f) => f.fieldKind === "list" && f.listKind === "message" && f.message.typeName === "baton.v1.TaskSpec");
    if (field) return { method, field: field.localName };
  }
  return undefined;
}

/** Submits tasks in bulk calls of `batch`, `window` calls in flight, until `ids` is exhausted or `deadline` (Date.now() ms). */
export function submitBulk(control: Driver["control"], found: BulkMethod, ids: readonly string[], batch: number, window: number, deadline: number): Promise<Submitted> {
  const call = (control as unknown as Record<string, (req: unknown, opts: unknown) => Promise<unknown>>)[found.method.localName]!;
  let next = 0;
  return submitting(window, deadline, async (tally) => {
    if (next >= ids.length) return false;
    const some = ids.slice(next, (next += batch));
    try {
      // Each task is answered on its own: one refused does not refuse the call.
      const answer = (await call({ [found.field]: some.map((id) => benchTask(id)) }, { deadline: 60_000 })) as { results?: Array<{ code: number; message: string }> };
      for (const r of answer.results ?? []) {
        if (r.code === 0) tally.submitted++;
        else {
          tally.failed++;
          tally.lastError = `code ${r.code}: ${r.message}`;
        }
      }
    } catch (err) {
      tally.failed += some.length;
      tally.lastError = (err as Error).message;
    }
    return true;
  });
}
