import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { Control, ObstacleKind, TaskSchema, TaskState, type ExplainTaskResponse } from "../../gen/baton/v1/control_pb.js";
import { HelloSchema } from "../../gen/baton/v1/session_pb.js";
import { explain } from "../../src/coordinator/explain.js";
import type { AgentRuntime, TaskRuntime } from "../../src/coordinator/runtime.js";
import { Code } from "../../src/errors.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor, waitForAsync } from "../helpers/server.js";

const fx = useFixture();

const kinds = (r: ExplainTaskResponse, agentId: string) => r.agents.find((a) => a.agentId === agentId)?.obstacles.map((o) => o.kind);

describe("Control.ExplainTask", () => {
  it("for a pending task names every agent and what keeps it away; once placed, why the winner won", async () => {
    fx.srv = await startServer(fx.pki);
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    // Resource ids are unique across agents.
    const gpu = (capacity: number, id = `gpu-${capacity}-${Math.random().toString(36).slice(2, 8)}`) => [{ resourceId: id, kind: "gpu", capacity }];
    const agents = [
      await fx.agent("a-cpu", { capabilities: ["cpu"], labels: { zone: "eu-1" } }),
      await fx.agent("a-us", { capabilities: ["render"], labels: { zone: "us-1" }, resources: gpu(4) }),
      await fx.agent("a-small", { capabilities: ["render"], labels: { zone: "eu-2" }, resources: gpu(1) }),
      await fx.agent("a-drain", { capabilities: ["render"], labels: { zone: "eu-3" }, resources: gpu(4) }),
    ];
    for (const a of agents) await a.connect();
    await control.drainAgent({ agentId: "a-drain", reason: "maintenance" });
    await control.submitTask({ task: { taskId: "t1", requiredCapabilities: ["render"], target: { labels: { zone: "eu-*" } }, resources: [{ kind: "gpu", amount: 2 }] } });
    // Rounds that find no place for it end; the task stays pending, explained once no round is planning it.
    let waiting!: ExplainTaskResponse;
    await waitForAsync(async () => !/being planned/.test((waiting = await control.explainTask({ taskId: "t1" })).summary), 30_000, "t1 out of a planning round");
    expect(waiting.task?.state).toBe(TaskState.PENDING);
    expect(waiting.eligibleCount).toBe(0);
    expect(waiting.agents.map((a) => a.agentId)).toEqual(["a-cpu", "a-drain", "a-small", "a-us"]);
    expect(waiting.agents.every((a) => !a.eligible && !a.chosen)).toBe(true);
    const cpu = waiting.agents.find((a) => a.agentId === "a-cpu")!;
    expect(cpu.obstacles.find((o) => o.kind === ObstacleKind.CAPABILITY_MISSING)?.missing).toEqual(["render"]);
    const us = waiting.agents.find((a) => a.agentId === "a-us")!;
    expect(us.obstacles).toEqual([expect.objectContaining({ kind: ObstacleKind.LABEL_MISMATCH, label: "zone", wanted: "eu-*", actual: "us-1" })]);
    const small = waiting.agents.find((a) => a.agentId === "a-small")!;
    expect(small.obstacles).toEqual([expect.objectContaining({ kind: ObstacleKind.RESOURCE_SHORT, shortfall: expect.objectContaining({ kind: "gpu", needed: 2, free: 1, shortBy: 1 }) })]);
    expect(kinds(waiting, "a-drain")).toEqual([ObstacleKind.DRAINING]);
    expect(waiting.summary).toMatch(/none of the 4 agents can take it \(.*lacking render: 1.*\)/);

    const good = await fx.agent("a-good", { capabilities: ["render"], labels: { zone: "eu-9" }, resources: gpu(4) });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    await good.connect();
    void good.run(async () => {
      await held;
      return { ok: true };
    });
    await waitFor(() => fx.srv.server.coordinator.getTask("t1").state === TaskState.RUNNING, 30_000, "t1 to run on a-good");
    const placed = await control.explainTask({ taskId: "t1" });
    const winner = placed.agents.find((a) => a.agentId === "a-good")!;
    expect(winner).toMatchObject({ chosen: true, eligible: true, obstacles: [] });
    expect(winner.reason).toMatch(/least loaded/);
    expect(placed.summary).toMatch(/running on a-good/);
    expect(placed.roundId).not.toBe("");
    expect(placed.agents.filter((a) => a.chosen).map((a) => a.agentId)).toEqual(["a-good"]);
    release();
    await waitFor(() => fx.srv.server.coordinator.getTask("t1").state === TaskState.SUCCEEDED, 30_000, "t1 to succeed");
  });

  it("an agent that rejected the task is excluded, and the task waits for its retry delay until a stated time", async () => {
    fx.srv = await startServer(fx.pki, { tasks: { retryDelayMs: 600_000 } });
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const picky = await fx.agent("picky", { capabilities: ["work"] });
    await picky.connect();
    void (async () => {
      for await (const d of picky.directives()) d.reject("not today");
    })();
    await control.submitTask({ task: { taskId: "r1", requiredCapabilities: ["work"] } });
    await waitFor(() => fx.srv.server.coordinator.getTask("r1").attempts.some((a) => a.outcome === "rejected"), 30_000, "the rejection");
    let r = await control.explainTask({ taskId: "r1" });
    // The task may still be between its attempt's end and pending; ask until it is pending again.
    await waitForAsync(async () => (r = await control.explainTask({ taskId: "r1" })).task?.state === TaskState.PENDING, 30_000, "r1 pending again");
    expect(kinds(r, "picky")).toEqual([ObstacleKind.EXCLUDED]);
    expect(r.notBefore).toBeDefined();
    expect(Number(r.notBefore!.seconds) * 1000).toBeGreaterThan(Date.now() + 60_000);
    expect(r.summary).toMatch(/retry delay until \d{4}-\d\d-\d\dT/);
  });

  it("an agent with every slot taken has NO_FREE_SLOT, with its figures", async () => {
    fx.srv = await startServer(fx.pki);
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const busy = await fx.agent("busy", { capabilities: ["work"], maxInFlight: 1 });
    await busy.connect();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    void busy.run(async () => {
      await held;
    });
    await control.submitTask({ task: { taskId: "first", requiredCapabilities: ["work"] } });
    await waitFor(() => fx.srv.server.coordinator.getTask("first").state === TaskState.RUNNING, 30_000, "first to run");
    await control.submitTask({ task: { taskId: "second", requiredCapabilities: ["work"] } });
    const r = await control.explainTask({ taskId: "second" });
    const agent = r.agents.find((a) => a.agentId === "busy")!;
    expect(agent.obstacles.map((o) => o.kind)).toEqual([ObstacleKind.NO_FREE_SLOT]);
    expect(agent).toMatchObject({ inFlight: 1, maxInFlight: 1 });
    release();
  });

  it("answers INVALID_ARGUMENT without a task id, NOT_FOUND for an unknown one, PERMISSION_DENIED without tasks.explain", async () => {
    fx.srv = await startServer(fx.pki);
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    await expect(control.explainTask({ taskId: "" })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    await expect(control.explainTask({ taskId: "nope" })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    const asAgent = createClient(Control, fx.channel(await fx.pki.credentials("managed_agent", "sneaky")));
    await expect(asAgent.explainTask({ taskId: "nope" })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED, details: expect.stringContaining("tasks.explain") });
  });
});

describe("explain (pure)", () => {
  const agent = (agentId: string, over: Partial<{ session: boolean; state: AgentState; allows: boolean; breaker: string; draining: boolean }> = {}) =>
    ({
      agentId,
      state: over.state ?? AgentState.ONLINE,
      hello: create(HelloSchema, { agentId, capabilities: ["work"] }),
      session: over.session === false ? undefined : {},
      draining: over.draining ?? false,
      breaker: { allows: over.allows ?? true, state: over.breaker ?? "closed" },
      maxInFlight: 4,
      outbox: { size: 0 },
    }) as unknown as AgentRuntime;
  const task = (): TaskRuntime => ({ task: create(TaskSchema, { spec: { taskId: "t", requiredCapabilities: ["work"] }, state: TaskState.PENDING }), excluded: new Set(), notBefore: 0, directives: new Set(), coalition: undefined, seq: 1, bytes: 0, issued: new Set() });

  it("names a breaker that refuses, an agent with no session and an offline one; a free agent is eligible", () => {
    const r = explain({
      task: task(),
      agents: [agent("open", { allows: false, breaker: "open" }), agent("gone", { session: false, state: AgentState.DISCONNECTED }), agent("lost", { session: false, state: AgentState.OFFLINE }), agent("free")],
      resources: [],
      now: Date.now(),
      roundId: "",
      planningNow: false,
      roles: new Map(),
    });
    expect(kinds(r, "open")).toEqual([ObstacleKind.BREAKER_OPEN]);
    expect(kinds(r, "gone")).toEqual([ObstacleKind.NOT_CONNECTED]);
    expect(kinds(r, "lost")).toEqual([ObstacleKind.OFFLINE]);
    expect(r.agents.find((a) => a.agentId === "free")).toMatchObject({ eligible: true, obstacles: [] });
    expect(r.eligibleCount).toBe(1);
    expect(r.summary).toMatch(/1 agent could take it now/);
  });

  it("a coalition: agents with none of its roles, and one short of a resource it does not offer; the summary counts them", () => {
    const rt = task();
    rt.task.spec!.coalition = { $typeName: "baton.v1.CoalitionSpec", size: 2, roles: ["planner", "executor"], formationTimeoutMs: 0 };
    rt.task.spec!.requiredCapabilities = [];
    rt.task.spec!.resources = [{ $typeName: "baton.v1.ResourceRequest", resourceId: "", kind: "gpu", amount: 1 }];
    const withCaps = (id: string, caps: string[]) => {
      const a = agent(id);
      a.hello.capabilities = caps;
      return a;
    };
    const r = explain({ task: rt, agents: [withCaps("p", ["planner"]), withCaps("w", ["work"])], resources: [], now: Date.now(), roundId: "", planningNow: false, roles: new Map() });
    expect(kinds(r, "w")).toEqual([ObstacleKind.ROLE_MISSING, ObstacleKind.RESOURCE_SHORT]);
    expect(r.agents.find((a) => a.agentId === "w")!.obstacles[0]!.missing).toEqual(["planner", "executor"]);
    expect(r.agents.find((a) => a.agentId === "p")!.obstacles).toEqual([expect.objectContaining({ kind: ObstacleKind.RESOURCE_SHORT, detail: "offers no gpu resource", shortfall: expect.objectContaining({ needed: 1, free: 0, shortBy: 1 }) })]);
    expect(r.summary).toBe("waiting: the coalition needs 2 agents, 0 could take part (short of gpu resources: 2; none of the coalition's roles: 1)");
  });
});
