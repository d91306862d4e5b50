import { describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { Code } from "../../src/errors.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

describe("Control.SubmitTasks", () => {
  it("accepts many tasks in one call, each answered on its own, all run", async () => {
    fx.srv = await startServer(fx.pki, { tasks: { maxBulk: 600 } });
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const agent = await fx.agent("bulk-worker", { capabilities: ["work"], maxInFlight: 64 });
    await agent.connect();
    void agent.run(async (d) => ({ ok: d.directiveId.length > 0 }));
    await control.submitTask({ task: { taskId: "already", requiredCapabilities: ["work"] } });
    const tasks = Array.from({ length: 500 }, (_, i) => ({ taskId: `bulk-${i}`, requiredCapabilities: ["work"], input: { i } }));
    tasks[10] = { taskId: "bad id with spaces", requiredCapabilities: ["work"], input: { i: 10 } };
    tasks[20] = { taskId: "already", requiredCapabilities: ["work"], input: { i: 20 } };
    tasks[30] = { taskId: "already", requiredCapabilities: ["work"] } as (typeof tasks)[number];
    const { results } = await control.submitTasks({ tasks });
    expect(results).toHaveLength(500);
    expect(results.map((r) => r.taskId)).toEqual(tasks.map((t) => t.taskId));
    expect(results[10]).toMatchObject({ code: Code.INVALID_ARGUMENT, created: false });
    expect(results[10]!.message).toMatch(/task_id/);
    expect(results[20]).toMatchObject({ code: Code.ALREADY_EXISTS, created: false });
    expect(results[30]).toMatchObject({ code: Code.OK, created: false });
    const accepted = results.filter((r) => r.code === Code.OK && r.created);
    expect(accepted).toHaveLength(497);
    // Every accepted task runs to the end.
    await waitFor(() => accepted.every((r) => fx.srv.server.coordinator.getTask(r.taskId).state === TaskState.SUCCEEDED), 60_000, "every bulk task to succeed");
    // Submitted again, the same call changes nothing.
    const again = await control.submitTasks({ tasks: tasks.filter((_, i) => i !== 10 && i !== 20) });
    expect(again.results.every((r) => r.code === Code.OK && !r.created)).toBe(true);
  });

  it("refuses an empty call and one over tasks.maxBulk with INVALID_ARGUMENT, accepting nothing", async () => {
    fx.srv = await startServer(fx.pki, { tasks: { maxBulk: 5 } });
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    await expect(control.submitTasks({ tasks: [] })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    const six = Array.from({ length: 6 }, (_, i) => ({ taskId: `x${i}`, requiredCapabilities: ["work"] }));
    const refused = await control.submitTasks({ tasks: six }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: Code.INVALID_ARGUMENT });
    expect((refused as { details: string }).details).toMatch(/tasks\.maxBulk/);
    expect((await control.listTasks({})).tasks).toHaveLength(0);
  });

  it("needs the tasks.submit capability", async () => {
    fx.srv = await startServer(fx.pki);
    const asAgent = createClient(Control, fx.channel(await fx.pki.credentials("managed_agent", "sneaky")));
    await expect(asAgent.submitTasks({ tasks: [{ taskId: "t", requiredCapabilities: ["work"] }] })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
  });
});
