import { describe, expect, it } from "vitest";
import { Control, CoordinationState, TaskState } from "../../gen/baton/v1/control_pb.js";
import { createAgent } from "../../src/agent/index.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

describe("a coordination round", () => {
  it("re-plans its own failed task (monitoring -> coordinating on adjustment_needed) and goes idle when it is done", async () => {
    fx.srv = await startServer(fx.pki, { tasks: { retryDelayMs: 10 } });
    const a = createAgent({ address: fx.srv.address, agentId: "a1", credentials: await fx.pki.credentials("managed_agent", "a1"), capabilities: ["work"] });
    fx.defer(() => a.close({ flushMs: 100 }));
    await a.connect();
    let failures = 1;
    void a.run(async () => {
      if (failures-- > 0) throw new Error("transient");
      return { ok: true };
    });
    const ch = createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops"));
    fx.defer(() => ch.close());
    const control = createClient(Control, ch);
    const states: string[] = [];
    const ac = new AbortController();
    // Resumes after the latest event (the agent's online, so never 0: that would be live only, racing
    // the submit below), so every round event after it is seen however late the watch registers.
    const after = fx.srv.server.events.last;
    expect(after).toBeGreaterThan(0n);
    const watching = (async () => {
      try {
        for await (const { event } of control.watchEvents({ topics: ["round.#"], afterCursor: after }, { signal: ac.signal })) states.push(event!.topic.split(".").pop()!);
      } catch {
        /* cancelled */
      }
    })();
    await control.submitTask({ task: { taskId: "t1", requiredCapabilities: ["work"] } });
    await waitFor(() => states.at(-1) === "idle" || undefined, 30_000, "the round.*.idle event");
    ac.abort();
    await watching;
    expect(states).toEqual(["coordinating", "executing", "monitoring", "coordinating", "executing", "monitoring", "idle"]);
    const { recent, rounds } = await control.getCoordination({});
    expect(rounds).toEqual([]);
    expect(recent[0]).toMatchObject({ state: CoordinationState.IDLE, taskIds: ["t1"], trigger: "task_submitted" });
    expect((await control.getTask({ taskId: "t1" })).task!.state).toBe(TaskState.SUCCEEDED);
  });

  it("with nothing placeable, goes coordinating -> error -> idle (coordination_failure, recovery_complete)", async () => {
    fx.srv = await startServer(fx.pki);
    const a = createAgent({ address: fx.srv.address, agentId: "a1", credentials: await fx.pki.credentials("managed_agent", "a1"), capabilities: ["other"] });
    fx.defer(() => a.close({ flushMs: 100 }));
    await a.connect();
    void a.run(async () => ({}));
    const ch = createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops"));
    fx.defer(() => ch.close());
    const control = createClient(Control, ch);
    await control.submitTask({ task: { taskId: "t1", requiredCapabilities: ["work"] } });
    await waitFor(() => fx.srv.server.coordinator.coordination().recent.length > 0 || undefined, 30_000, "a finished round");
    const events = fx.srv.server.events.watch(["round.#"], 1n, AbortSignal.timeout(30_000))[Symbol.asyncIterator]();
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) seen.push((await events.next()).value!.topic.split(".").pop()!);
    expect(seen).toEqual(["coordinating", "error", "idle"]);
  });
});
