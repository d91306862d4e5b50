import { describe, expect, it } from "vitest";
import { Control, TaskState, type Task } from "../../gen/baton/v1/control_pb.js";
import type { CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import { createAgent, type BatonAgent, type ReceivedDirective } from "../../src/agent/index.js";
import { Code } from "../../src/errors.js";
import { createChannel, createClient, type ServiceClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();
let control: ServiceClient<typeof Control>;

/**
 * The server's formation timeout is far beyond any test, so a member's late accept on a loaded
 * machine never dissolves a team; the dissolve test sets a short one on its own task.
 */
async function start(maxAttempts = 3): Promise<void> {
  fx.srv = await startServer(fx.pki, { tasks: { retryDelayMs: 10, coalitionFormationMs: 30_000, maxAttempts } });
  const ch = createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops"));
  fx.defer(() => ch.close());
  control = createClient(Control, ch);
}

async function agent(id: string, caps: string[]): Promise<BatonAgent> {
  const a = createAgent({ address: fx.srv.address, agentId: id, credentials: await fx.pki.credentials("managed_agent", id), capabilities: caps, maxInFlight: 2 });
  fx.defer(() => a.close({ flushMs: 100 }));
  await a.connect();
  return a;
}

async function until(id: string, state: TaskState): Promise<Task> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const t = (await control.getTask({ taskId: id })).task!;
    if (t.state === state) return t;
    if (Date.now() > deadline) throw new Error(`${id} is ${TaskState[t.state]} after 30 s, not ${TaskState[state]}: ${t.reason}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const coalitionOf = (d: CoordinationDirective) => (d.parameters?.kind.case === "formCoalition" ? d.parameters.kind.value : undefined);

describe("coalitions (form_coalition)", () => {
  it("members completing at the same moment settle the task once, with no fault", async () => {
    await start();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    for (const [id, caps] of [["planner-2", ["planner"]], ["executor-2", ["executor"]]] as const) {
      const a = await agent(id, [...caps]);
      void a.run(async () => {
        started++;
        await gate;
        return { from: id };
      });
    }
    await control.submitTask({ task: { taskId: "together", coalition: { roles: ["planner", "executor"] } } });
    await until("together", TaskState.RUNNING);
    while (started < 2) await new Promise((r) => setTimeout(r, 10));
    // Both completions are in flight at once: the second finds the task settled by the first.
    release();
    const t = await until("together", TaskState.SUCCEEDED);
    expect(t.result).toEqual({ from: "planner-2" });
    // Both completions acknowledged, neither a fault.
    await waitFor(() => fx.srv.logs.lines.filter((l) => l.message_type === "completion_ack").length === 2, 30_000, "both completions to be acknowledged");
    expect(fx.srv.logs.lines.filter((l) => l.level === "error" || l.level === 50)).toEqual([]);
  });

  it("forms a team with a leader, one member per role, and succeeds when every member has", async () => {
    await start();
    const seen: Array<{ agent: string; role: string; leader: string; members: string[] }> = [];
    for (const [id, caps] of [["planner-1", ["planner"]], ["executor-1", ["executor"]]] as const) {
      const a = await agent(id, [...caps]);
      void a.run(async (d) => {
        const c = coalitionOf(d)!;
        seen.push({ agent: id, role: c.role, leader: c.leader, members: c.members });
        return { from: id };
      });
    }
    await control.submitTask({ task: { taskId: "team", coalition: { roles: ["planner", "executor"] } } });
    const t = await until("team", TaskState.SUCCEEDED);
    expect(t.attempts).toHaveLength(1);
    expect([...t.attempts[0]!.agents].sort()).toEqual(["executor-1", "planner-1"]);
    expect(seen.map((x) => [x.agent, x.role]).sort()).toEqual([["executor-1", "executor"], ["planner-1", "planner"]]);
    expect(new Set(seen.map((x) => x.leader))).toEqual(new Set(["planner-1"]));
    // The leader's result is the task's.
    expect(t.result).toEqual({ from: "planner-1" });
  });

  it("is all or nothing: a member that never accepts dissolves the team within the formation timeout", async () => {
    // Attempts to spare: with a short formation timeout a loaded machine may dissolve a later team too.
    await start(10);
    const held: ReceivedDirective[] = [];
    const planner = await agent("planner-1", ["planner"]);
    void planner.run(async () => ({ ok: true }));
    const executor = await agent("executor-1", ["executor"]);
    void (async () => {
      for await (const r of executor.directives()) {
        if (held.length === 0) {
          held.push(r); // the first is never answered: that coalition cannot form
        } else {
          r.accept();
          r.complete({ ok: true });
        }
      }
    })();
    await control.submitTask({ task: { taskId: "team", coalition: { roles: ["planner", "executor"], formationTimeoutMs: 1000 } } });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const t = (await control.getTask({ taskId: "team" })).task!;
      if (t.attempts.some((a) => a.outcome === "coalition_not_formed")) break;
      if (Date.now() > deadline) throw new Error("the coalition was not dissolved within 30 s");
      await new Promise((r) => setTimeout(r, 20));
    }
    // The planner's half was cancelled and released; the next attempt forms.
    const t = await until("team", TaskState.SUCCEEDED);
    expect(t.attempts[0]!.outcome).toBe("coalition_not_formed");
    expect(fx.srv.server.inventory.reservations()).toEqual([]);
    expect(held.length).toBeGreaterThan(0);
  });

  it("waits while a role cannot be filled, and refuses an empty role", async () => {
    await start();
    const p = await agent("planner-1", ["planner"]);
    void p.run(async () => ({}));
    await control.submitTask({ task: { taskId: "team", coalition: { roles: ["planner", "executor"] } } });
    await new Promise((r) => setTimeout(r, 300));
    expect((await control.getTask({ taskId: "team" })).task!.state).toBe(TaskState.PENDING);
    const e = await agent("executor-1", ["executor"]);
    void e.run(async () => ({}));
    await until("team", TaskState.SUCCEEDED);
    await expect(control.submitTask({ task: { taskId: "bad", coalition: { roles: ["planner", " "] } } })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
  });
});
