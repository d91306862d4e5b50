import { describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { Code } from "../../src/errors.js";
import { createClient, type ServiceClient } from "../../src/rpc/index.js";
import { TASK_TRANSITIONS, nextTaskState } from "../../src/coordinator/task-state.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

async function control(): Promise<ServiceClient<typeof Control>> {
  return createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
}

describe("pending work is bounded", () => {
  it("refuses a task beyond tasks.maxOpen with RESOURCE_EXHAUSTED naming the setting, and takes it once one has ended", async () => {
    fx.srv = await startServer(fx.pki, { tasks: { maxOpen: 3 } });
    const c = await control();
    for (let i = 0; i < 3; i++) await c.submitTask({ task: { taskId: `t${i}`, requiredCapabilities: ["nobody-has-this"] } });
    const refused = await c.submitTask({ task: { taskId: "t3", requiredCapabilities: ["nobody-has-this"] } }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    expect((refused as { details: string }).details).toMatch(/tasks\.maxOpen/);
    // Nothing already accepted is lost, and a duplicate of an accepted task is still answered.
    expect((await c.listTasks({})).tasks.map((t) => t.spec!.taskId)).toEqual(["t0", "t1", "t2"]);
    expect((await c.submitTask({ task: { taskId: "t0", requiredCapabilities: ["nobody-has-this"] } })).created).toBe(false);
    await c.cancelTask({ taskId: "t1", reason: "make room" });
    expect((await c.submitTask({ task: { taskId: "t3", requiredCapabilities: ["nobody-has-this"] } })).created).toBe(true);
  });

  it("a resubmit beyond tasks.maxOpen is refused and leaves the dead letter as it was", async () => {
    fx.srv = await startServer(fx.pki, { tasks: { maxOpen: 1 } });
    const c = await control();
    const agent = await fx.agent("failing", { capabilities: ["doomed"] });
    await agent.connect();
    void (async () => {
      for await (const received of agent.directives()) {
        received.accept();
        received.fail({ message: "never works", retryable: false });
      }
    })();
    await c.submitTask({ task: { taskId: "dead", requiredCapabilities: ["doomed"] } });
    await waitFor(() => fx.srv.server.coordinator.getTask("dead").state === TaskState.DEAD_LETTERED, 60_000, "the task to be dead-lettered");
    await c.submitTask({ task: { taskId: "filler", requiredCapabilities: ["nobody-has-this"] } });
    const before = (await c.getTask({ taskId: "dead" })).task!;
    await expect(c.resubmitTask({ taskId: "dead" })).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    const after = (await c.getTask({ taskId: "dead" })).task!;
    expect(after.state).toBe(TaskState.DEAD_LETTERED);
    expect(after.attempts).toEqual(before.attempts);
  });

  it("refuses a task whose spec would pass tasks.maxOpenBytes", async () => {
    fx.srv = await startServer(fx.pki, { tasks: { maxOpenBytes: 10_000 } });
    const c = await control();
    const input = { blob: "x".repeat(4000) };
    await c.submitTask({ task: { taskId: "a", requiredCapabilities: ["none"], input } });
    await c.submitTask({ task: { taskId: "b", requiredCapabilities: ["none"], input } });
    const refused = await c.submitTask({ task: { taskId: "c", requiredCapabilities: ["none"], input } }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    expect((refused as { details: string }).details).toMatch(/tasks\.maxOpenBytes/);
    // Small work still fits beside them.
    expect((await c.submitTask({ task: { taskId: "small", requiredCapabilities: ["none"] } })).created).toBe(true);
  });
});

describe("ListTasks paging", () => {
  it("continues after the last task of a page even when that task changed state in between", async () => {
    fx.srv = await startServer(fx.pki);
    const c = await control();
    for (let i = 0; i < 6; i++) await c.submitTask({ task: { taskId: `p${i}`, requiredCapabilities: ["none"] } });
    const first = await c.listTasks({ states: [TaskState.PENDING], pageSize: 2 });
    expect(first.tasks.map((t) => t.spec!.taskId)).toEqual(["p0", "p1"]);
    // The page's last task leaves the filtered state before the next page is read.
    await c.cancelTask({ taskId: "p1", reason: "changed" });
    const second = await c.listTasks({ states: [TaskState.PENDING], pageSize: 2, pageToken: first.nextPageToken });
    expect(second.tasks.map((t) => t.spec!.taskId)).toEqual(["p2", "p3"]);
    const third = await c.listTasks({ states: [TaskState.PENDING], pageSize: 2, pageToken: second.nextPageToken });
    expect(third.tasks.map((t) => t.spec!.taskId)).toEqual(["p4", "p5"]);
    expect(third.nextPageToken).toBe("");
    await expect(c.listTasks({ pageToken: "no-such-task" })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
  });

  it("keeps creation order across a restart", async () => {
    const { openSqliteStore } = await import("../../src/store/index.js");
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "baton-order-"));
    fx.defer(() => rmSync(dir, { recursive: true, force: true }));
    // Ids whose order by name is not their order of submission.
    const ids = ["zeta", "alpha", "mid", "beta"];
    fx.srv = await startServer(fx.pki, {}, openSqliteStore({ path: join(dir, "journal.sqlite") }));
    let c = await control();
    for (const id of ids) await c.submitTask({ task: { taskId: id, requiredCapabilities: ["none"] } });
    await fx.srv.stop();
    fx.srv = await startServer(fx.pki, {}, openSqliteStore({ path: join(dir, "journal.sqlite") }));
    c = await control();
    expect((await c.listTasks({})).tasks.map((t) => t.spec!.taskId)).toEqual(ids);
  });
});

describe("the task state table", () => {
  it("allows exactly the listed transitions", () => {
    const all = [TaskState.PENDING, TaskState.ASSIGNED, TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.DEAD_LETTERED, TaskState.CANCELLED];
    for (const [event, moves] of TASK_TRANSITIONS) {
      for (const state of all) {
        if (moves.has(state)) expect(nextTaskState(state, event)).toBe(moves.get(state));
        else expect(() => nextTaskState(state, event)).toThrow(expect.objectContaining({ code: Code.FAILED_PRECONDITION }));
      }
    }
    // Finished tasks stay finished, but for a dead letter's resubmission.
    for (const [event] of TASK_TRANSITIONS) {
      expect(TASK_TRANSITIONS.get(event)!.has(TaskState.SUCCEEDED)).toBe(false);
      expect(TASK_TRANSITIONS.get(event)!.has(TaskState.CANCELLED)).toBe(false);
    }
  });
});
