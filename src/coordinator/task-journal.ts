import { fromBinary, fromJson, toBinary, toJson, type DescMessage, type JsonObject, type MessageShape } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { TaskSchema, TaskSpecSchema, type Task, type TaskSpec } from "../../gen/baton/v1/control_pb.js";
import { JournalDirectiveSchema, JournalSessionSchema, type JournalDirective, type JournalSession } from "../../gen/baton/v1/journal_pb.js";
import { failedPrecondition } from "../errors.js";
import { JournalError, type Store, type WriteOp } from "../store/index.js";
import { decodeBinary, encodeBinary } from "../rpc/index.js";

/** What the journal holds, read back at start. */
export interface JournalContents {
  tasks: Task[];
  directives: JournalDirective[];
  sessions: JournalSession[];
}

/** How a commit is written. */
export interface CommitOptions {
  /**
   * Write it with the next commit, or after this many ms if none comes first: for a change
   * nothing waits on (a directive's acceptance), which then shares the fsync of the one
   * that usually follows (its completion). It is durable before any event reports it.
   */
  deferMs?: number;
}

/**
 * A record committed but not yet encoded: it is encoded when its batch is written, from the
 * object as it is then. A task committed at its acceptance and again at its completion in
 * one batch is encoded once; what a commit promised is in that later state too.
 */
type PendingOp = WriteOp | { type: "task"; key: string; task: Task } | { type: "directive"; key: string; directive: JournalDirective } | { type: "session"; key: string; session: JournalSession };

// A batch's ops with only the last op on each key (the same record written twice in one
// batch, as a task is when it is accepted and completed at once), in the order they came.
function lastPerKey(ops: PendingOp[]): PendingOp[] {
  if (ops.length < 2) return ops;
  const last = new Map<string, number>();
  ops.forEach((op, i) => last.set(op.key, i));
  return last.size === ops.length ? ops : ops.filter((op, i) => last.get(op.key) === i);
}

/** Changes that must be durable together. */
export interface JournalChange {
  tasks?: Task[];
  directives?: JournalDirective[];
  sessions?: JournalSession[];
  deleteDirectives?: string[];
  /** Ended tasks forgotten (tasks.keepEnded): their records go, a sealed input's with them. */
  deleteTasks?: Task[];
}

const TASK = "task/";
const DIRECTIVE = "directive/";
const SESSION = "session/";
// A task's sensitive_input, sealed with the store's secret box, beside its task record
// (which is written without it): "sealed-input/<task id>".
const SEALED_INPUT = "sealed-input/";
// What a sealed input is bound to: moved under another task id, it does not open.
const sealContext = (taskId: string) => `task/${taskId}/sensitive_input`;

/**
 * The coordinator's state as protobuf records in a Store. Changes made in the same tick
 * are committed together (group commit): one durable write, however many callers.
 *
 * Records are encoded when their batch is written, from the objects as they are then, so a
 * record committed twice in one batch is encoded once. That rests on the coordinator's rule
 * that a change and its commit are made in one synchronous step: at a batch's start no
 * object it holds is halfway through a change, and a change made after a commit but before
 * the write is committed itself, into the same batch or the next.
 *
 * A task's sensitive_input never rests in plain text in a durable store: it is sealed
 * (AES-256-GCM, store.secrets) into its own record, written once per input, and joined
 * back at load. In a store that keeps nothing (memory) it stays in the task record.
 */
export class TaskJournal {
  private pending: PendingOp[] = [];
  private waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  private scheduled = false;
  /** A commit that may wait (CommitOptions.deferMs): the timer that writes it if nothing else does first. */
  private deferred: NodeJS.Timeout | undefined;
  /** Whether a write is out: what is committed meanwhile waits, and goes as one batch when it ends (group commit). */
  private inFlight = false;
  private writing: Promise<void> = Promise.resolve();
  /** The first failed write: from then on every commit is refused (see commit). */
  private failure: unknown;
  // Inputs whose sealed record is durable under the current key (the objects themselves:
  // a task's spec does not change, and a new spec object is sealed anew).
  private readonly sealed = new WeakSet<JsonObject>();
  private readonly sealsSecrets: boolean;
  // Each spec's bytes in its task record, by spec object, for the same reason: a task's record
  // is written at every state change, and its spec (the input with it) is most of the work.
  private readonly specBytes = new WeakMap<TaskSpec, Uint8Array>();

  /** `onFailure` runs once, at the first write that fails. */
  constructor(
    private readonly store: Store,
    private readonly onFailure: (err: unknown) => void = () => {},
  ) {
    this.sealsSecrets = store.durable !== false;
  }

  /** Whether it can hold a task's sensitive_input: sealed at rest under a key, or nowhere durable (memory). */
  get holdsSecrets(): boolean {
    return !this.sealsSecrets || this.store.secrets !== undefined;
  }

  /** Whether a write has failed: this journal takes no more changes. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Reads every record (at start); a JournalError for a record that does not decode or a sealed input that does not open. */
  async load(): Promise<JournalContents> {
    const all = async (prefix: string) => {
      const out: Array<[string, Uint8Array]> = [];
      let after: string | undefined;
      for (;;) {
        const page = await this.store.scan(prefix, { ...(after ? { startAfter: after } : {}), limit: 1000 });
        out.push(...page);
        if (page.length < 1000) return out;
        after = page.at(-1)![0];
      }
    };
    const decode = <S extends DescMessage>(schema: S, [key, value]: [string, Uint8Array]): MessageShape<S> => {
      try {
        return decodeBinary(schema, value);
      } catch (err) {
        throw new JournalError(`the journal ${this.store.name ?? ""} has a record ${key} that does not decode (${(err as Error).message}): it is damaged`);
      }
    };
    const tasks = (await all(TASK)).map((entry) => decode(TaskSchema, entry));
    const contents: JournalContents = {
      tasks,
      directives: (await all(DIRECTIVE)).map((entry) => decode(JournalDirectiveSchema, entry)),
      sessions: (await all(SESSION)).map((entry) => decode(JournalSessionSchema, entry)),
    };
    const byId = new Map(tasks.map((t) => [t.spec!.taskId, t]));
    const reseal = new Set<Task>();
    for (const [key, value] of await all(SEALED_INPUT)) {
      const task = byId.get(key.slice(SEALED_INPUT.length));
      if (!task?.spec) continue;
      const box = this.store.secrets;
      if (!box) throw new JournalError(`the journal ${this.store.name ?? ""} holds sealed sensitive_input (${key}) but was opened without a key (store.keyFile)`);
      const input = toJson(StructSchema, fromBinary(StructSchema, box.open(value, sealContext(task.spec.taskId)))) as JsonObject;
      task.spec.sensitiveInput = input;
      // Sealed under an older key: sealed again under the current one below, so the old key can be retired.
      if (box.keyIdOf(value) === box.currentKeyId) this.sealed.add(input);
      else reseal.add(task);
    }
    if (this.sealsSecrets) {
      // Written by a baton that kept sensitive_input in the task record: sealed now.
      for (const t of tasks) if (t.spec?.sensitiveInput && !this.sealed.has(t.spec.sensitiveInput)) reseal.add(t);
      if (reseal.size > 0) await this.commit({ tasks: [...reseal] });
    }
    return contents;
  }

  /**
   * Makes the change durable; resolves once it is (acknowledge nothing before). After a
   * failed write every later commit is refused, whether queued already or not: a later
   * batch was built on the state the failed one described, so writing it would leave a
   * journal that no moment of the coordinator ever held.
   */
  commit(change: JournalChange, options: CommitOptions = {}): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.refusal());
    const sealing: JsonObject[] = [];
    try {
      const ops = (change.tasks ?? []).flatMap((t) => this.taskOps(t, sealing));
      this.pending.push(...ops);
    } catch (err) {
      return Promise.reject(err);
    }
    for (const d of change.directives ?? []) this.pending.push({ type: "directive", key: DIRECTIVE + d.directive!.directiveId, directive: d });
    for (const s of change.sessions ?? []) this.pending.push({ type: "session", key: SESSION + s.agentId, session: s });
    for (const id of change.deleteDirectives ?? []) this.pending.push({ type: "delete", key: DIRECTIVE + id });
    for (const t of change.deleteTasks ?? []) {
      const id = t.spec!.taskId;
      this.pending.push({ type: "delete", key: TASK + id });
      if (t.spec!.sensitiveInput && this.sealsSecrets) this.pending.push({ type: "delete", key: SEALED_INPUT + id });
    }
    const written = new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (options.deferMs === undefined) this.schedule();
      else if (!this.scheduled && !this.inFlight) this.deferred ??= setTimeout(() => this.schedule(), options.deferMs).unref();
    });
    if (sealing.length === 0) return written;
    return written.then(() => {
      for (const input of sealing) this.sealed.add(input);
    });
  }

  // The task record, and its sealed input when it has one not yet durable; `sealing` collects the inputs sealed.
  private taskOps(task: Task, sealing: JsonObject[]): PendingOp[] {
    const spec = task.spec!;
    const input = spec.sensitiveInput;
    const record: PendingOp = { type: "task", key: TASK + spec.taskId, task };
    if (!input || !this.sealsSecrets) return [record];
    const ops: PendingOp[] = [record];
    if (!this.sealed.has(input)) {
      const box = this.store.secrets;
      if (!box) throw failedPrecondition(`task ${spec.taskId} has sensitive_input, which the journal ${this.store.name ?? ""} seals at rest, but no key is configured (store.keyFile)`);
      ops.push({ type: "put", key: SEALED_INPUT + spec.taskId, value: box.seal(toBinary(StructSchema, fromJson(StructSchema, input)), sealContext(spec.taskId)) });
      sealing.push(input);
    }
    return ops;
  }

  /**
   * The task's record: what toBinary(TaskSchema, task) gives (spec is field 1, written first),
   * without its sensitive_input when that is sealed apart, with the spec encoded once per spec.
   */
  private taskRecord(task: Task): Uint8Array {
    const spec = task.spec!;
    let specBytes = this.specBytes.get(spec);
    if (!specBytes) {
      // The coordinator keeps the input in memory to seal it for the agent: only the record goes without.
      const { sensitiveInput: _kept, ...withoutInput } = spec;
      const recorded = spec.sensitiveInput && this.sealsSecrets ? withoutInput : spec;
      specBytes = new BinaryWriter().tag(TaskSchema.field.spec!.number, WireType.LengthDelimited).bytes(encodeBinary(TaskSpecSchema, recorded)).finish();
      this.specBytes.set(spec, specBytes);
    }
    const rest = encodeBinary(TaskSchema, { ...task, spec: undefined });
    const record = new Uint8Array(specBytes.length + rest.length);
    record.set(specBytes, 0);
    record.set(rest, specBytes.length);
    return record;
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    clearTimeout(this.deferred);
    this.deferred = undefined;
    // The write out now starts the next batch when it ends.
    if (this.inFlight) return;
    const pending = lastPerKey(this.pending);
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    this.inFlight = true;
    // Writes stay in order: a batch starts once the previous one is durable. An empty
    // batch writes nothing: it resolves once everything committed before it is durable.
    this.writing = this.write(pending, waiters).finally(() => {
      this.inFlight = false;
      // Everything committed while that write was out, at once: its callers have waited already.
      if (this.waiters.length > 0) this.flush();
    });
  }

  // The batch's records, encoded from their objects as they are now.
  private encoded(pending: PendingOp[]): WriteOp[] {
    return pending.map((op) => {
      switch (op.type) {
        case "task":
          return { type: "put", key: op.key, value: this.taskRecord(op.task) };
        case "directive":
          return { type: "put", key: op.key, value: encodeBinary(JournalDirectiveSchema, op.directive) };
        case "session":
          return { type: "put", key: op.key, value: encodeBinary(JournalSessionSchema, op.session) };
        default:
          return op;
      }
    });
  }

  private async write(pending: PendingOp[], waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }>): Promise<void> {
    if (this.failure !== undefined) return waiters.forEach((w) => w.reject(this.refusal()));
    try {
      // An object that does not encode fails its batch as a failed write would: nothing of it is written.
      if (pending.length > 0) await this.store.write(this.encoded(pending));
    } catch (err) {
      this.failure = err;
      waiters.forEach((w) => w.reject(err));
      this.onFailure(err);
      return;
    }
    waiters.forEach((w) => w.resolve());
  }

  /** Resolves once every change committed so far is durable; rejects if one of them failed. */
  barrier(): Promise<void> {
    return this.commit({});
  }

  private refusal(): Error {
    return new Error(`an earlier journal write failed (${(this.failure as Error)?.message ?? String(this.failure)}); nothing more is written until the journal is reloaded`);
  }

  /** Waits for pending writes, then closes the store. */
  async close(): Promise<void> {
    while (this.inFlight || this.waiters.length > 0) {
      if (!this.inFlight) this.flush();
      await this.writing;
    }
    await this.store.close();
  }
}
