import { describe, expect, it } from "vitest";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { findCandidates, hasIdleMisfit } from "../../src/coordinator/candidate-search.js";
import { SAMPLE_ABOVE } from "../../src/coordinator/plan-input.js";
import type { AgentRuntime, TaskRuntime } from "../../src/coordinator/runtime.js";

// The fields the search reads; the rest of a runtime plays no part in it. `looked` holds
// the agents a search looked at (it reads each one's outbox first).
const looked = new Set<string>();
const agent = (i: number, held: number, capabilities = ["work"]) =>
  ({
    agentId: `a${String(i).padStart(5, "0")}`,
    state: AgentState.ONLINE,
    session: {},
    draining: false,
    breaker: { allows: true, state: "closed" },
    maxInFlight: 4,
    // Read first, for every agent looked at (a full one is skipped before anything else).
    get outbox() {
      looked.add(`a${String(i).padStart(5, "0")}`);
      return { size: held };
    },
    hello: { capabilities, labels: {} },
  }) as unknown as AgentRuntime;
const task = (id: string, requiredCapabilities = ["work"]) => ({ task: { spec: { taskId: id, requiredCapabilities } }, excluded: new Set<string>() }) as unknown as TaskRuntime;
const ring = (agents: AgentRuntime[]) => ({ agents, cursor: 0 });
const ids = (agents: AgentRuntime[]) => agents.map((a) => a.agentId);

describe("a round's candidates", () => {
  it("are every able agent when there are few", () => {
    const few = Array.from({ length: SAMPLE_ABOVE }, (_, i) => agent(i, i % 3, i === 5 ? ["other"] : ["work"]));
    const { candidates, usable } = findCandidates(ring(few), [task("t")], new Set(["a00007"]));
    expect(usable).toBe(true);
    expect(ids(candidates)).toEqual(ids(few.filter((_, i) => i !== 5 && i !== 7)));
  });

  it("for one task among 10,000 idle agents, look at a handful of them, not all", () => {
    const many = Array.from({ length: 10_000 }, (_, i) => agent(i, 0));
    looked.clear();
    const { candidates } = findCandidates(ring(many), [task("t")], new Set());
    expect(candidates).toHaveLength(8);
    expect(looked.size).toBeLessThanOrEqual(8);
  });

  it("prefer idle agents, and move on round the ring so like tasks spread", () => {
    const many = Array.from({ length: 1000 }, (_, i) => agent(i, i % 2 === 0 ? 2 : 0));
    const r = ring(many);
    const first = ids(findCandidates(r, [task("t1")], new Set()).candidates);
    const second = ids(findCandidates(r, [task("t2")], new Set()).candidates);
    expect(first.every((id) => Number(id.slice(1)) % 2 === 1)).toBe(true);
    expect(second.every((id) => Number(id.slice(1)) % 2 === 1)).toBe(true);
    expect(second.some((id) => first.includes(id))).toBe(false);
  });

  it("take the least loaded busy agents of a bounded sample when none is idle", () => {
    // Every agent busy, a few less than the rest: the search looks at a sample, not at all 10,000.
    const many = Array.from({ length: 10_000 }, (_, i) => agent(i, i % 50 === 7 ? 1 : 3));
    looked.clear();
    const chosen = findCandidates(ring(many), [task("t")], new Set()).candidates;
    expect(chosen).toHaveLength(8);
    expect(looked.size).toBeLessThanOrEqual(64);
    // The least loaded of those looked at (agents 0 to 63) come first.
    expect(ids(chosen)).toEqual(expect.arrayContaining(["a00007", "a00057"]));
  });

  it("take the idle agents it sees, and the least loaded busy ones beside them", () => {
    const many = Array.from({ length: 100 }, (_, i) => agent(i, i === 50 ? 1 : i >= 10 && i < 15 ? 0 : 3));
    const chosen = ids(findCandidates(ring(many), [task("t")], new Set()).candidates);
    expect(chosen).toHaveLength(8);
    expect(chosen).toEqual(expect.arrayContaining(["a00010", "a00011", "a00012", "a00013", "a00014", "a00050"]));
  });

  it("go round the whole ring for a task few agents can run, however busy", () => {
    const many = Array.from({ length: 5000 }, (_, i) => agent(i, 3, i === 4321 ? ["rare"] : ["work"]));
    expect(ids(findCandidates(ring(many), [task("special", ["rare"])], new Set()).candidates)).toEqual(["a04321"]);
  });

  it("cover every agent when the tasks need that many", () => {
    const many = Array.from({ length: 200 }, (_, i) => agent(i, 0));
    const tasks = Array.from({ length: 1000 }, (_, i) => task(`t${i}`));
    looked.clear();
    expect(findCandidates(ring(many), tasks, new Set()).candidates).toHaveLength(200);
    // Like tasks are searched for together: one walk round the ring, not one per task.
    expect(looked.size).toBeLessThanOrEqual(200);
  });

  it("keep the one agent that can run a task, however loaded", () => {
    const many = Array.from({ length: 500 }, (_, i) => (i === 321 ? agent(i, 3, ["rare"]) : agent(i, 0)));
    expect(ids(findCandidates(ring(many), [task("common"), task("special", ["rare"])], new Set()).candidates)).toContain("a00321");
  });

  it("say when the only able agents are claimed by another round, and when there are none", () => {
    const many = Array.from({ length: 100 }, (_, i) => agent(i, 0, i === 42 ? ["rare"] : ["work"]));
    expect(findCandidates(ring(many), [task("special", ["rare"])], new Set(["a00042"]))).toEqual({ candidates: [], usable: true });
    expect(findCandidates(ring(many), [task("none", ["nobody"])], new Set())).toEqual({ candidates: [], usable: false });
  });
});

// A pass that read only a backlog's head widens its read when a free agent got nothing from
// it (coordination-rounds.ts): this says whether there is such an agent.
describe("an idle misfit", () => {
  const target = (id: string, agentId: string) => ({ task: { spec: { taskId: id, requiredCapabilities: [], target: { agentId, labels: {} } } }, excluded: new Set<string>() }) as unknown as TaskRuntime;

  it("is a free, unclaimed agent that can run none of the tasks read", () => {
    const agents = [agent(0, 0, ["a"]), agent(1, 0, ["b"])];
    expect(hasIdleMisfit(ring(agents), [task("t1", ["a"]), task("t2", ["a"])], new Set())).toBe(true);
    expect(hasIdleMisfit(ring(agents), [task("t1", ["a"]), task("t2", ["b"])], new Set())).toBe(false);
  });

  it("is not an agent that is full or claimed by another round", () => {
    const full = [agent(0, 0, ["a"]), agent(1, 4, ["b"])];
    expect(hasIdleMisfit(ring(full), [task("t1", ["a"])], new Set())).toBe(false);
    const claimed = [agent(0, 0, ["a"]), agent(1, 0, ["b"])];
    expect(hasIdleMisfit(ring(claimed), [task("t1", ["a"])], new Set(["a00001"]))).toBe(false);
  });

  it("is assumed past 64 kinds of task, rather than checked at a cost of agents x kinds", () => {
    const agents = Array.from({ length: 100 }, (_, i) => agent(i, 0));
    const everyone = agents.map((a, i) => target(`t${i}`, a.agentId));
    // Each agent has a task of its own among the 100 read: none is a misfit, but there are too many kinds to check.
    expect(hasIdleMisfit(ring(agents), everyone, new Set())).toBe(true);
    expect(hasIdleMisfit(ring(agents.slice(0, 10)), everyone.slice(0, 10), new Set())).toBe(false);
  });
});
