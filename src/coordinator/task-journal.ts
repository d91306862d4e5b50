import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { TaskSchema, type Task } from "../../gen/baton/v1/control_pb.js";
import { JournalDirectiveSchema, JournalSessionSchema, type JournalDirective, type JournalSession } from "../../gen/baton/v1/journal_pb.js";
import type { Store, WriteOp } from "../store/index.js";

/** What the journal holds, read back at start. */
export interface JournalContents {
  tasks: Task[];
  directives: JournalDirective[];
  sessions: JournalSession[];
}

/** Changes that must be durable together. */
export interface JournalChange {
  tasks?: Task[];
  directives?: JournalDirective[];
  sessions?: JournalSession[];
  deleteDirectives?: string[];
}

const TASK = "task/";
const DIRECTIVE = "directive/";
const SESSION = "session/";

/**
 * The coordinator's state as protobuf records in a Store. Changes made in the same tick
 * are committed together (group commit): one durable write, however many callers.
 */
export class TaskJournal {
  private pending: WriteOp[] = [];
  private waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  private scheduled = false;
  private writing: Promise<void> = Promise.resolve();
  /** The first failed write: from then on every commit is refused (see commit). */
  private failure: unknown;

  /** `onFailure` runs once, at the first write that fails. */
  constructor(
    private readonly store: Store,
    private readonly onFailure: (err: unknown) => void = () => {},
  ) {}

  /** Whether a write has failed: this journal takes no more changes. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Reads every record (at start). */
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
    return {
      tasks: (await all(TASK)).map(([, v]) => fromBinary(TaskSchema, v)),
      directives: (await all(DIRECTIVE)).map(([, v]) => fromBinary(JournalDirectiveSchema, v)),
      sessions: (await all(SESSION)).map(([, v]) => fromBinary(JournalSessionSchema, v)),
    };
  }

  /**
   * Makes the change durable; resolves once it is (acknowledge nothing before). After a
   * failed write every later commit is refused, whether queued already or not: a later
   * batch was built on the state the failed one described, so writing it would leave a
   * journal that no moment of the coordinator ever held.
   */
  commit(change: JournalChange): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.refusal());
    for (const t of change.tasks ?? []) this.pending.push({ type: "put", key: TASK + t.spec!.taskId, value: toBinary(TaskSchema, t) });
    for (const d of change.directives ?? []) this.pending.push({ type: "put", key: DIRECTIVE + d.directive!.directiveId, value: toBinary(JournalDirectiveSchema, d) });
    for (const s of change.sessions ?? []) this.pending.push({ type: "put", key: SESSION + s.agentId, value: toBinary(JournalSessionSchema, s) });
    for (const id of change.deleteDirectives ?? []) this.pending.push({ type: "delete", key: DIRECTIVE + id });
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const ops = this.pending;
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    // Writes stay in order: each batch starts after the previous one is durable. An empty
    // batch writes nothing: it resolves once everything committed before it is durable.
    this.writing = this.writing.then(async () => {
      if (this.failure !== undefined) return waiters.forEach((w) => w.reject(this.refusal()));
      try {
        if (ops.length > 0) await this.store.write(ops);
      } catch (err) {
        this.failure = err;
        waiters.forEach((w) => w.reject(err));
        this.onFailure(err);
        return;
      }
      waiters.forEach((w) => w.resolve());
    });
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
    if (this.scheduled) this.flush();
    await this.writing;
    await this.store.close();
  }
}
