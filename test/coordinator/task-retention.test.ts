import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Control, TaskSpecSchema, TaskState } from "../../gen/baton/v1/control_pb.js";
import { buildConfig, type ConfigOverrides } from "../../src/config.js";
import { Coordinator } from "../../src/coordinator/index.js";
import { Code } from "../../src/errors.js";
import { createLogger } from "../../src/logging.js";
import { embeddedResourceManager, ResourceInventory } from "../../src/resources/index.js";
import { createClient, type ServiceClient } from "../../src/rpc/index.js";
import { JOURNAL_FILE, openSqliteStore } from "../../src/store/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, TEST_JOURNAL_KEY, waitFor, waitForAsync } from "../helpers/server.js";

const fx = useFixture();
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "baton-retention-"));
  dirs.push(dir);
  return dir;
}

async function control(): Promise<ServiceClient<typeof Control>> {
  return createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
}

// A task no agent can take: it stays pending until cancelled, which ends it.
const waiting = (taskId: string, extra: Record<string, unknown> = {}) => ({ task: { taskId, requiredCapabilities: ["nobody-has-this"], ...extra } });

// The task and sealed-input records in a stopped server's SQLite journal, read as any SQLite client would.
function journalKeys(dataDir: string): string[] {
  const db = new Database(join(dataDir, JOURNAL_FILE), { readonly: true });
  try {
    return (db.prepare("SELECT key FROM kv WHERE key LIKE 'task/%' OR key LIKE 'sealed-input/%' ORDER BY key").all() as Array<{ key: string }>).map((r) => r.key);
  } finally {
    db.close();
  }
}

const ids = (tasks: Array<{ spec?: { taskId: string } }>) => tasks.map((t) => t.spec!.taskId);

describe("ended tasks are kept up to tasks.keepEnded, then forgotten", () => {
  it("forgets the ones ended longest ago, in memory and in the journal (sealed input too), never an open one; a restart does not bring them back", async () => {
    const dataDir = tempDir();
    const overrides: ConfigOverrides = { tasks: { keepEnded: 3 }, store: { kind: "sqlite", dataDir, key: TEST_JOURNAL_KEY } };
    fx.srv = await startServer(fx.pki, overrides);
    let c = await control();
    await c.submitTask(waiting("open"));
    for (let i = 0; i < 6; i++) await c.submitTask(waiting(`e${i}`, i === 0 ? { sensitiveInput: { token: "s3cret" } } : {}));
    // Ended in the order e5, e0, e1 ... e4: the one ended longest ago goes first, whenever it was made.
    await c.cancelTask({ taskId: "e5", reason: "done" });
    for (let i = 0; i < 5; i++) await c.cancelTask({ taskId: `e${i}`, reason: "done" });
    await waitForAsync(async () => (await c.listTasks({})).tasks.length === 4, 10_000, "the three ended longest ago to be forgotten");
    expect(ids((await c.listTasks({})).tasks)).toEqual(["open", "e2", "e3", "e4"]);
    const missing = await c.getTask({ taskId: "e0" }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: Code.NOT_FOUND });
    expect((missing as { details: string }).details).toMatch(/no task "e0" \(or it ended and was forgotten: the 3 ended last are kept \(tasks\.keepEnded\)/);
    await expect(c.cancelTask({ taskId: "e5" })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    const metrics = await (await fetch(`http://127.0.0.1:${fx.srv.server.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/^baton_tasks_forgotten_total 3$/m);
    expect(metrics).toMatch(/^baton_tasks\{state="cancelled"\} 3$/m);

    await fx.srv.stop();
    expect(journalKeys(dataDir)).toEqual(["task/e2", "task/e3", "task/e4", "task/open"]);
    fx.srv = await startServer(fx.pki, overrides);
    c = await control();
    expect(ids((await c.listTasks({})).tasks)).toEqual(["open", "e2", "e3", "e4"]);
    // A forgotten id is free: submitting it again is a new task.
    const again = await c.submitTask(waiting("e0"));
    expect(again.created).toBe(true);
    expect(again.task!.state).toBe(TaskState.PENDING);
  });

  it("a ListTasks page token continues after its task even once that task is forgotten; a token it cannot place is INVALID_ARGUMENT", async () => {
    fx.srv = await startServer(fx.pki, { tasks: { keepEnded: 1 } });
    const c = await control();
    for (let i = 0; i < 5; i++) await c.submitTask(waiting(`p${i}`));
    const first = await c.listTasks({ pageSize: 2 });
    expect(ids(first.tasks)).toEqual(["p0", "p1"]);
    for (const id of ["p1", "p0", "p3"]) await c.cancelTask({ taskId: id, reason: "done" });
    await waitFor(() => fx.srv.server.coordinator.taskCounts().get(TaskState.CANCELLED) === 1, 10_000, "p1 and p0 to be forgotten");
    // p1, the page's last task, is gone, and its id is submitted anew (last in creation order
    // now); the next page is still the tasks made after the p1 the page ended on.
    await c.submitTask(waiting("p1"));
    const second = await c.listTasks({ pageSize: 2, pageToken: first.nextPageToken });
    expect(ids(second.tasks)).toEqual(["p2", "p3"]);
    expect(ids((await c.listTasks({ pageSize: 2, pageToken: second.nextPageToken })).tasks)).toEqual(["p4", "p1"]);
    // A bare task id (what earlier versions handed out) still reads.
    expect(ids((await c.listTasks({ pageSize: 2, pageToken: "p2" })).tasks)).toEqual(["p3", "p4"]);
    expect(ids((await c.listTasks({ pageSize: 2, pageToken: "p4" })).tasks)).toEqual(["p1"]);
    // A token of an earlier numbering (before a restart) whose task is gone cannot be placed.
    const stale = await c.listTasks({ pageToken: "00000000:0:p0" }).catch((e: unknown) => e);
    expect(stale).toMatchObject({ code: Code.INVALID_ARGUMENT });
    expect((stale as { details: string }).details).toMatch(/task "p0", which has since been forgotten \(tasks\.keepEnded\).*list again from the start/);
    await expect(c.listTasks({ pageToken: "no-such-task" })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(/not one ListTasks returned/) });
  });
});

describe("task retention on the coordinator's clock", () => {
  // A coordinator on a real SQLite journal with a clock the test moves.
  function coordinatorAt(dataDir: string, clock: { ms: number }, tasks: ConfigOverrides["tasks"]): Coordinator {
    const config = buildConfig({ store: { kind: "sqlite", dataDir }, tasks });
    const store = openSqliteStore({ path: join(dataDir, JOURNAL_FILE) });
    return new Coordinator({ config, logger: createLogger({ level: "silent" }), store, now: () => clock.ms, resources: embeddedResourceManager(new ResourceInventory()) });
  }
  const spec = (taskId: string) => create(TaskSpecSchema, { taskId, requiredCapabilities: ["nobody-has-this"] });

  it("forgets a task ended longer than tasks.keepEndedMs ago, whatever the count, and at load too", async () => {
    const dataDir = tempDir();
    const clock = { ms: Date.parse("2026-12-01T00:00:00Z") };
    let coordinator = coordinatorAt(dataDir, clock, { keepEnded: 100, keepEndedMs: 60_000 });
    await coordinator.start();
    for (const id of ["a", "b", "c", "d", "open"]) await coordinator.submitTask(spec(id), "test");
    await coordinator.cancelTask("a", "done");
    clock.ms += 30_000;
    await coordinator.cancelTask("b", "done");
    clock.ms += 31_000;
    // a has been ended 61 s, b 31 s: the next end finds a past the bound.
    await coordinator.cancelTask("c", "done");
    await waitFor(() => coordinator.taskCounts().get(TaskState.CANCELLED) === 2, 10_000, "a to be forgotten");
    expect(() => coordinator.getTask("a")).toThrow(/no task "a"/);
    expect(coordinator.getTask("b").state).toBe(TaskState.CANCELLED);
    await coordinator.shutdown();

    // Loaded 30 s later: b has been ended 61 s and goes at load; c (30 s) stays, and the open task.
    clock.ms += 30_000;
    coordinator = coordinatorAt(dataDir, clock, { keepEnded: 100, keepEndedMs: 60_000 });
    await coordinator.start();
    await waitFor(() => coordinator.taskCounts().get(TaskState.CANCELLED) === 1, 10_000, "b to be forgotten at load");
    expect(coordinator.listTasks([], 100, "").tasks.map((t) => t.spec!.taskId)).toEqual(["c", "d", "open"]);
    await coordinator.shutdown();
    expect(journalKeys(dataDir)).toEqual(["task/c", "task/d", "task/open"]);
  });

  it("forgets by age with no other end to prompt it (the timer), and keeps every task with keepEndedMs 0", async () => {
    const clock = { ms: Date.now() };
    const dataDir = tempDir();
    const coordinator = coordinatorAt(dataDir, clock, { keepEnded: 100, keepEndedMs: 50 });
    await coordinator.start();
    await coordinator.submitTask(spec("a"), "test");
    await coordinator.cancelTask("a", "done");
    // Moved on by the real clock: the coordinator's timer, not a later end, finds a past its bound.
    const timer = setInterval(() => (clock.ms = Date.now()), 10);
    try {
      await waitFor(() => coordinator.taskCounts().get(TaskState.CANCELLED) === 0, 10_000, "a to be forgotten by the age timer");
    } finally {
      clearInterval(timer);
    }
    await coordinator.shutdown();

    const keepAll = coordinatorAt(tempDir(), clock, { keepEnded: 100, keepEndedMs: 0 });
    await keepAll.start();
    await keepAll.submitTask(spec("old"), "test");
    await keepAll.cancelTask("old", "done");
    clock.ms += 365 * 86_400_000;
    await keepAll.submitTask(spec("new"), "test");
    await keepAll.cancelTask("new", "done");
    await keepAll.durable();
    await new Promise((r) => setImmediate(r));
    expect(keepAll.taskCounts().get(TaskState.CANCELLED)).toBe(2);
    await keepAll.shutdown();
  });

  it("a journal holding far more than keepEnded is trimmed once loaded, in passes of at most 500", async () => {
    const dataDir = tempDir();
    const clock = { ms: Date.now() };
    let coordinator = coordinatorAt(dataDir, clock, { keepEnded: 100_000 });
    await coordinator.start();
    const n = 1_200;
    const names = Array.from({ length: n }, (_, i) => `t${String(i).padStart(4, "0")}`);
    await Promise.all(names.map((id) => coordinator.submitTask(spec(id), "test")));
    await Promise.all(names.map((id) => coordinator.cancelTask(id, "done")));
    await coordinator.shutdown();

    coordinator = coordinatorAt(dataDir, clock, { keepEnded: 10 });
    const passes: number[] = [];
    coordinator.on("tasks.forgotten", (count) => passes.push(count));
    await coordinator.start();
    await waitFor(() => coordinator.taskCounts().get(TaskState.CANCELLED) === 10, 20_000, "the journal to be trimmed to 10 ended tasks");
    expect(passes).toEqual([500, 500, 190]);
    // The ten ended last are kept, in creation order.
    expect(coordinator.listTasks([], 100, "").tasks.map((t) => t.spec!.taskId)).toEqual(names.slice(-10));
    await coordinator.shutdown();
    expect(journalKeys(dataDir)).toEqual(names.slice(-10).map((id) => `task/${id}`));
  });
});
