import { clone, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Priority } from "../../gen/baton/v1/common_pb.js";
import { TaskAttemptSchema, TaskSchema, TaskState, type Task } from "../../gen/baton/v1/control_pb.js";
import { TaskJournal } from "../../src/coordinator/task-journal.js";
import { createMemoryStore, createSecretBox, openSqliteStore, type Store } from "../../src/store/index.js";

// A task's record is written at every state change with its spec encoded once (by spec
// object): the bytes must be what encoding the whole task gives, at every change.

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function richTask(id: string, secret?: Record<string, string>): Task {
  return create(TaskSchema, {
    spec: {
      taskId: id,
      requiredCapabilities: ["gpu", "résumé"],
      priority: Priority.HIGH,
      labels: { team: "ml", "名前": "値" },
      input: { prompt: "x".repeat(300), nested: { list: [1, "two", true, null] } },
      ...(secret ? { sensitiveInput: secret } : {}),
      maxAttempts: 3,
    },
    state: TaskState.PENDING,
    submitter: "spiffe://baton.test/operator/ops",
    createdAt: { seconds: 1_700_000_000n, nanos: 5 },
    updatedAt: { seconds: 1_700_000_000n, nanos: 5 },
  });
}

/** The value last written under `key`. */
function recording(inner: Store): { store: Store; last(key: string): Uint8Array | undefined } {
  const written = new Map<string, Uint8Array>();
  const store: Store = {
    ...inner,
    async write(ops, conditions) {
      for (const op of ops) if (op.type === "put") written.set(op.key, op.value);
      return inner.write(ops, conditions);
    },
  };
  return { store, last: (key) => written.get(key) };
}

/** Walks a task through the states a run takes, committing each; checks every record against `expected`. */
async function walkStates(journal: TaskJournal, record: (key: string) => Uint8Array | undefined, task: Task, expected: (t: Task) => Uint8Array): Promise<void> {
  const steps: Array<(t: Task) => void> = [
    () => {},
    (t) => {
      t.state = TaskState.ASSIGNED;
      t.assignedAgents.push("bench-agent-00001");
      t.attempts.push(create(TaskAttemptSchema, { attempt: 1, agents: ["bench-agent-00001"], directiveIds: ["0190a3b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b"], startedAt: { seconds: 1_700_000_000n } }));
    },
    (t) => (t.state = TaskState.RUNNING),
    (t) => {
      t.state = TaskState.SUCCEEDED;
      t.result = { ok: true, note: "done ✓" };
      t.attempts[0]!.outcome = "succeeded";
      t.updatedAt = timestampFromMs(1_700_000_001_000);
    },
  ];
  for (const step of steps) {
    step(task);
    await journal.commit({ tasks: [task] });
    const bytes = record(`task/${task.spec!.taskId}`)!;
    expect(Buffer.from(bytes).equals(Buffer.from(expected(task)))).toBe(true);
    expect(fromBinary(TaskSchema, bytes).state).toBe(task.state);
  }
}

describe("a task's journal record", () => {
  it("is the task's own encoding at every state change (a store that keeps input in the record)", async () => {
    const rec = recording(createMemoryStore());
    const journal = new TaskJournal(rec.store);
    await walkStates(journal, rec.last, richTask("t-plain", { token: "kept in memory" }), (t) => toBinary(TaskSchema, t));
    await journal.close();
  });

  it("is the task's encoding without sensitive_input where the input is sealed apart, at every change", async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-task-record-"));
    dirs.push(dir);
    const rec = recording(openSqliteStore({ path: join(dir, "journal.sqlite"), secrets: createSecretBox([Buffer.alloc(32, 2)], "a test key") }));
    const journal = new TaskJournal(rec.store);
    await journal.load();
    const task = richTask("t-sealed", { token: "never in the record" });
    await walkStates(journal, rec.last, task, (t) => {
      const copy = clone(TaskSchema, t);
      copy.spec!.sensitiveInput = undefined;
      return toBinary(TaskSchema, copy);
    });
    expect(Buffer.from(rec.last("task/t-sealed")!).includes("never in the record")).toBe(false);
    await journal.close();
    // Read back, the sealed input joins its task again.
    const again = new TaskJournal(openSqliteStore({ path: join(dir, "journal.sqlite"), secrets: createSecretBox([Buffer.alloc(32, 2)], "a test key") }));
    const { tasks } = await again.load();
    expect(tasks[0]!.spec!.sensitiveInput).toEqual({ token: "never in the record" });
    expect(tasks[0]!.state).toBe(TaskState.SUCCEEDED);
    await again.close();
  });

  it("a new spec object for the same task is encoded anew", async () => {
    const rec = recording(createMemoryStore());
    const journal = new TaskJournal(rec.store);
    const task = richTask("t-respec");
    await journal.commit({ tasks: [task] });
    task.spec = create(TaskSchema, { spec: { taskId: "t-respec", priority: Priority.LOW, labels: { other: "spec" } } }).spec;
    await journal.commit({ tasks: [task] });
    const back = fromBinary(TaskSchema, rec.last("task/t-respec")!);
    expect(back.spec!.labels).toEqual({ other: "spec" });
    expect(back.spec!.input).toBeUndefined();
    await journal.close();
  });
});
