import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { TaskSchema, TaskState } from "../../gen/baton/v1/control_pb.js";
import { TaskJournal } from "../../src/coordinator/task-journal.js";
import { createMemoryStore, type Store, type WriteOp } from "../../src/store/index.js";

// The task journal's group commit: what is committed while a write is out goes as one
// batch; a deferred commit shares the next one's write; events wait without hastening.

/** A memory store whose writes are held until released, and counted. */
function heldStore(): { store: Store; writes: WriteOp[][]; release(): void } {
  const inner = createMemoryStore();
  const writes: WriteOp[][] = [];
  let gate: (() => void) | undefined;
  const store: Store = {
    ...inner,
    async write(ops, conditions) {
      writes.push(ops);
      await new Promise<void>((resolve) => (gate = resolve));
      return inner.write(ops, conditions);
    },
  };
  return { store, writes, release: () => gate?.() };
}

const task = (id: string, state = TaskState.PENDING) => create(TaskSchema, { spec: { taskId: id }, state });
const settled = async (p: Promise<unknown>) => (await Promise.race([p.then(() => true), new Promise((r) => setImmediate(() => r(false)))])) as boolean;

describe("group commit", () => {
  it("commits made while a write is out go together in the next write", async () => {
    const held = heldStore();
    const journal = new TaskJournal(held.store);
    const first = journal.commit({ tasks: [task("a")] });
    await new Promise((r) => setImmediate(r));
    expect(held.writes).toHaveLength(1);
    const later = [journal.commit({ tasks: [task("b")] }), journal.commit({ tasks: [task("c")] }), journal.commit({ tasks: [task("d")] })];
    await new Promise((r) => setImmediate(r));
    // Still one write out: the three wait for it.
    expect(held.writes).toHaveLength(1);
    held.release();
    await first;
    await new Promise((r) => setImmediate(r));
    expect(held.writes).toHaveLength(2);
    expect(held.writes[1]!.map((op) => op.key)).toEqual(["task/b", "task/c", "task/d"]);
    expect(await settled(Promise.all(later))).toBe(false);
    held.release();
    await Promise.all(later);
  });

  it("a deferred commit shares the next commit's write, and a record written twice in a batch is written once", async () => {
    const held = heldStore();
    const journal = new TaskJournal(held.store);
    const accepted = journal.commit({ tasks: [task("a", TaskState.RUNNING)] }, { deferMs: 60_000 });
    await new Promise((r) => setTimeout(r, 20));
    expect(held.writes).toHaveLength(0);
    const done = journal.commit({ tasks: [task("a", TaskState.SUCCEEDED)] });
    await new Promise((r) => setImmediate(r));
    expect(held.writes).toHaveLength(1);
    expect(held.writes[0]!.map((op) => op.key)).toEqual(["task/a"]);
    held.release();
    await Promise.all([accepted, done]);
  });

  it("a deferred commit alone is written once its delay is up", async () => {
    const held = heldStore();
    const journal = new TaskJournal(held.store);
    const accepted = journal.commit({ tasks: [task("a", TaskState.RUNNING)] }, { deferMs: 50 });
    await new Promise((r) => setImmediate(r));
    expect(held.writes).toHaveLength(0);
    expect(await settled(accepted)).toBe(false);
    // Written by its timer, then durable.
    await new Promise<void>((resolve) => {
      const poll = () => (held.writes.length > 0 ? resolve() : setTimeout(poll, 5));
      poll();
    });
    held.release();
    await accepted;
  });

  it("a barrier writes a deferred commit now", async () => {
    const held = heldStore();
    const journal = new TaskJournal(held.store);
    const accepted = journal.commit({ tasks: [task("a")] }, { deferMs: 60_000 });
    const barrier = journal.barrier();
    await new Promise((r) => setImmediate(r));
    expect(held.writes).toHaveLength(1);
    held.release();
    await Promise.all([accepted, barrier]);
  });
});

describe("records are encoded as their batch is written", () => {
  it("a record is encoded from its object as its batch goes out, so a task committed twice in one batch is encoded once, in its later state", async () => {
    const held = heldStore();
    const journal = new TaskJournal(held.store);
    const first = journal.commit({ tasks: [task("x")] });
    await new Promise((r) => setImmediate(r));
    const a = task("a", TaskState.RUNNING);
    const running = journal.commit({ tasks: [a] });
    // The later change, made before its own commit: the record written is already this state
    // (a record encoded at commit would hold RUNNING here).
    a.state = TaskState.SUCCEEDED;
    a.reason = "done";
    held.release();
    await first;
    await new Promise((r) => setImmediate(r));
    expect(held.writes).toHaveLength(2);
    const batch = held.writes[1]!;
    expect(batch.map((op) => op.key)).toEqual(["task/a"]);
    expect(batch[0]!.type === "put" && Buffer.from(batch[0]!.value).equals(Buffer.from(toBinary(TaskSchema, a)))).toBe(true);
    const done = journal.commit({ tasks: [a] });
    await new Promise((r) => setImmediate(r));
    held.release();
    await running;
    await new Promise((r) => setImmediate(r));
    held.release();
    await done;
    // What was read back is the later state.
    const loaded = await new TaskJournal(held.store).load();
    expect(loaded.tasks.find((t) => t.spec!.taskId === "a")?.state).toBe(TaskState.SUCCEEDED);
  });

  it("an object that does not encode fails its whole batch as a failed write does, and every later commit is refused", async () => {
    const held = heldStore();
    const failures: unknown[] = [];
    const journal = new TaskJournal(held.store, (err) => failures.push(err));
    // An enum is an int32 on the wire: this one cannot be written.
    const bad = create(TaskSchema, { spec: { taskId: "bad" }, state: 2 ** 40 as TaskState });
    const good = journal.commit({ tasks: [task("good")] });
    const broken = journal.commit({ tasks: [bad] });
    await expect(good).rejects.toThrow(/int32/);
    await expect(broken).rejects.toThrow(/int32/);
    expect(held.writes).toHaveLength(0);
    expect(failures).toHaveLength(1);
    await expect(journal.commit({ tasks: [task("later")] })).rejects.toThrow(/an earlier journal write failed/);
    expect(await held.store.scan("task/")).toEqual([]);
  });
});

describe("a task's event", () => {
  it("is published only once the change it reports is durable, though published before its commit", async () => {
    const { EventEmitter } = await import("node:events");
    const { publishTask } = await import("../../src/coordinator/coordinator-state.js");
    const held = heldStore();
    const journal = new TaskJournal(held.store);
    const events = new EventEmitter();
    const seen: string[] = [];
    events.on("task.updated", (t: { spec?: { taskId: string } }, reason: string) => seen.push(`${t.spec?.taskId} ${reason}`));
    const state = { journal, epoch: 0, events } as unknown as Parameters<typeof publishTask>[0];
    // The idle journal, and the order every call site uses: publish, then commit.
    publishTask(state, task("a", TaskState.CANCELLED), "cancelled");
    const written = journal.commit({ tasks: [task("a", TaskState.CANCELLED)] });
    await new Promise((r) => setTimeout(r, 20));
    expect(held.writes).toHaveLength(1);
    expect(seen).toEqual([]);
    held.release();
    await written;
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(["a cancelled"]);
    // With its own (deferred) write named, it waits for that one.
    const accepted = journal.commit({ tasks: [task("b", TaskState.RUNNING)] }, { deferMs: 30 });
    publishTask(state, task("b", TaskState.RUNNING), "accepted", accepted);
    await new Promise((r) => setTimeout(r, 5));
    expect(seen).toEqual(["a cancelled"]);
    await new Promise<void>((resolve) => {
      const poll = () => (held.writes.length > 1 ? resolve() : setTimeout(poll, 5));
      poll();
    });
    held.release();
    await accepted;
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(["a cancelled", "b accepted"]);
  });
});
