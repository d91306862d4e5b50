import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { generatePlan, type PlanAgent, type PlanInput, type PlanTask } from "../../src/planner/index.js";

const CAPS = ["python", "gpu", "summarize", "planner", "executor"];
const KINDS = ["cpu", "gpu", "mem"];

const agentArb = (i: number): fc.Arbitrary<PlanAgent> =>
  fc.record({
    capabilities: fc.subarray(CAPS),
    zone: fc.constantFrom("a", "b"),
    freeSlots: fc.integer({ min: 0, max: 4 }),
    load: fc.integer({ min: 0, max: 4 }),
    resources: fc.array(fc.record({ kind: fc.constantFrom(...KINDS), capacity: fc.constantFrom(0, 1, 2, 4), reserved: fc.constantFrom(0, 0, 1) }), { maxLength: 3 }),
    utilization: fc.double({ min: 0, max: 1, noNaN: true }),
  }).map((r) => ({
    agentId: `agent-${String(i).padStart(3, "0")}`,
    capabilities: new Set(r.capabilities),
    labels: { zone: r.zone },
    freeSlots: r.freeSlots,
    load: r.load,
    resources: r.resources.map((x, k) => ({ resourceId: `agent-${i}-r${k}`, kind: x.kind, capacity: x.capacity, reserved: Math.min(x.reserved, x.capacity) })),
    utilization: r.utilization,
  }));

const taskArb = (i: number): fc.Arbitrary<PlanTask> =>
  fc.record({
    priority: fc.integer({ min: 0, max: 3 }),
    submitter: fc.constantFrom("alice", "bob", "carol"),
    caps: fc.subarray(CAPS, { maxLength: 2 }),
    resources: fc.array(fc.record({ kind: fc.constantFrom(...KINDS), amount: fc.constantFrom(0, 0.5, 1, 2) }), { maxLength: 2 }),
    zone: fc.option(fc.constantFrom("a", "*"), { nil: undefined }),
    coalition: fc.option(fc.record({ roles: fc.subarray(["planner", "executor"], { minLength: 1 }), extra: fc.integer({ min: 0, max: 1 }) }), { nil: undefined, freq: 4 }),
  }).map((r) => ({
    taskId: `task-${String(i).padStart(4, "0")}`,
    priority: r.priority,
    submitter: r.submitter,
    order: i,
    requiredCapabilities: r.caps,
    resources: r.resources,
    ...(r.zone ? { target: { labels: { zone: r.zone } } } : {}),
    ...(r.coalition ? { coalition: { roles: r.coalition.roles, size: r.coalition.roles.length + r.coalition.extra } } : {}),
  }));

const inputArb: fc.Arbitrary<PlanInput> = fc
  .record({ agents: fc.integer({ min: 0, max: 12 }), tasks: fc.integer({ min: 0, max: 30 }), strategy: fc.constantFrom("least_loaded" as const, "bin_packing" as const) })
  .chain(({ agents, tasks, strategy }) =>
    fc.record({
      agents: fc.tuple(...Array.from({ length: agents }, (_, i) => agentArb(i))),
      tasks: fc.tuple(...Array.from({ length: tasks }, (_, i) => taskArb(i))),
      strategy: fc.constant(strategy),
    }),
  )
  .map((x) => ({ agents: [...x.agents], tasks: [...x.tasks], strategy: x.strategy }));

describe("the plan generator, property-based", () => {
  it("never over-commits a resource or an agent, and meets every capability", () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const plan = generatePlan(input);
        const agents = new Map(input.agents.map((a) => [a.agentId, a]));
        const tasks = new Map(input.tasks.map((t) => [t.taskId, t]));
        const slots = new Map<string, number>();
        const used = new Map<string, number>();
        for (const p of plan.planned) {
          const task = tasks.get(p.taskId)!;
          const roles = task.coalition ? task.coalition.size : 1;
          expect(p.members).toHaveLength(roles);
          expect(new Set(p.members.map((m) => m.agentId)).size).toBe(p.members.length);
          for (const m of p.members) {
            const a = agents.get(m.agentId)!;
            for (const c of task.requiredCapabilities) expect(a.capabilities.has(c)).toBe(true);
            if (m.role) expect(a.capabilities.has(m.role)).toBe(true);
            slots.set(a.agentId, (slots.get(a.agentId) ?? 0) + 1);
            expect(m.resources).toHaveLength(task.resources.length);
            for (const r of m.resources) used.set(r.resourceId, (used.get(r.resourceId) ?? 0) + r.amount);
          }
        }
        for (const [id, n] of slots) expect(n).toBeLessThanOrEqual(agents.get(id)!.freeSlots);
        for (const a of input.agents) for (const r of a.resources) expect(used.get(r.resourceId) ?? 0).toBeLessThanOrEqual((r.capacity || 1) - r.reserved + 1e-9);
        // Every task is either planned or unplaced with a reason, once.
        expect(plan.planned.length + plan.unplaced.length).toBe(input.tasks.length);
      }),
      { numRuns: 300 },
    );
  });

  it("higher priority never waits behind lower: lower-priority tasks do not change what higher ones get", () => {
    fc.assert(
      fc.property(inputArb, fc.integer({ min: 1, max: 3 }), (input, p) => {
        const high = input.tasks.filter((t) => t.priority >= p);
        const alone = generatePlan({ ...input, tasks: high });
        const mixed = generatePlan(input);
        const pick = (plan: ReturnType<typeof generatePlan>) => plan.planned.filter((x) => high.some((t) => t.taskId === x.taskId));
        expect(pick(mixed)).toEqual(pick(alone));
      }),
      { numRuns: 200 },
    );
  });

  it("is deterministic, whatever the order agents are listed in", () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        expect(generatePlan({ ...input, agents: [...input.agents].reverse() })).toEqual(generatePlan(input));
      }),
      { numRuns: 200 },
    );
  });
});

describe("the plan generator, by example", () => {
  const agent = (id: string, caps: string[], extra: Partial<PlanAgent> = {}): PlanAgent => ({ agentId: id, capabilities: new Set(caps), labels: {}, freeSlots: 4, load: 0, resources: [], ...extra });
  const task = (id: string, extra: Partial<PlanTask> = {}): PlanTask => ({ taskId: id, priority: 1, submitter: "s", order: Number(id.replace(/\D/g, "")) || 0, requiredCapabilities: [], resources: [], ...extra });

  it("spreads work to the least loaded agent, or packs it with bin-packing", () => {
    const agents = [agent("a", []), agent("b", [], { load: 2 })];
    expect(generatePlan({ agents, tasks: [task("t1")] }).planned[0]!.leader).toBe("a");
    expect(generatePlan({ agents, tasks: [task("t1")], strategy: "bin_packing" }).planned[0]!.leader).toBe("b");
  });

  it("is fair across submitters: a flood from one does not starve another", () => {
    const tasks = [...Array.from({ length: 10 }, (_, i) => task(`t${i}`, { submitter: "flood", order: i })), task("t99", { submitter: "quiet", order: 99 })];
    const plan = generatePlan({ agents: [agent("a", [], { freeSlots: 2 })], tasks });
    expect(plan.planned.map((p) => p.taskId)).toEqual(["t0", "t99"]);
  });

  it("forms a coalition all or nothing, with a leader", () => {
    const agents = [agent("p", ["planner"]), agent("e", ["executor"])];
    const coalition = { roles: ["planner", "executor"], size: 2 };
    const ok = generatePlan({ agents, tasks: [task("t1", { coalition })] });
    expect(ok.planned[0]).toMatchObject({ action: "form_coalition", leader: "p", members: [{ agentId: "p", role: "planner" }, { agentId: "e", role: "executor" }] });
    const short = generatePlan({ agents: [agents[0]!], tasks: [task("t1", { coalition }), task("t2")] });
    expect(short.unplaced[0]).toMatchObject({ taskId: "t1", reason: expect.stringMatching(/coalition/) });
    // The planner member was not held by the failed coalition: t2 still got it.
    expect(short.planned.map((p) => p.taskId)).toEqual(["t2"]);
  });

  it("reserves resources by kind and by id, never beyond capacity", () => {
    const agents = [agent("a", [], { resources: [{ resourceId: "cpu_core_1", kind: "cpu", capacity: 1, reserved: 0 }, { resourceId: "memory_block_2", kind: "mem", capacity: 4, reserved: 1 }] })];
    const plan = generatePlan({ agents, tasks: [task("t1", { resources: [{ resourceId: "cpu_core_1", amount: 0 }, { kind: "mem", amount: 2 }] }), task("t2", { resources: [{ kind: "cpu", amount: 1 }] })] });
    expect(plan.planned[0]!.members[0]!.resources).toEqual([{ resourceId: "cpu_core_1", amount: 1 }, { resourceId: "memory_block_2", amount: 2 }]);
    expect(plan.unplaced).toEqual([{ taskId: "t2", reason: "no eligible agent has a free slot and the resources" }]);
  });

  it("proposes moving an idle agent's resource to an overloaded agent for a task left unplaced", () => {
    const agents = [agent("busy", ["gpu"], { utilization: 0.95 }), agent("idle", [], { utilization: 0.05, resources: [{ resourceId: "gpu-0", kind: "gpu", capacity: 1, reserved: 0 }] })];
    const plan = generatePlan({ agents, tasks: [task("t1", { requiredCapabilities: ["gpu"], resources: [{ kind: "gpu", amount: 1 }] })] });
    expect(plan.adjustments).toEqual([{ from: "idle", to: "busy", resourceId: "gpu-0", kind: "gpu", amount: 1, forTask: "t1" }]);
  });
});
