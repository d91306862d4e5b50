import { describe, expect, it } from "vitest";
import { sampleCandidates, SAMPLE_ABOVE } from "../../src/coordinator/plan-input.js";
import type { AgentRuntime, TaskRuntime } from "../../src/coordinator/runtime.js";

// The fields sampling reads; the rest of a runtime plays no part in it.
const agent = (i: number, held: number, capabilities = ["work"]) =>
  ({ agentId: `a${String(i).padStart(4, "0")}`, maxInFlight: 4, outbox: { size: held }, hello: { capabilities, labels: {} } }) as unknown as AgentRuntime;
const task = (id: string, requiredCapabilities = ["work"]) => ({ task: { spec: { taskId: id, requiredCapabilities } }, excluded: new Set<string>() }) as unknown as TaskRuntime;

describe("sampling a round's candidates", () => {
  it("plans with every candidate when there are few", () => {
    const few = Array.from({ length: SAMPLE_ABOVE }, (_, i) => agent(i, i % 3));
    expect(sampleCandidates(few, [task("t")])).toBe(few);
  });

  it("for one task among many agents, takes a few of the least loaded, in id order among equals", () => {
    const many = Array.from({ length: 1000 }, (_, i) => agent(i, i < 990 ? 2 : 0));
    const chosen = sampleCandidates(many, [task("t")]).map((a) => a.agentId);
    expect(chosen.length).toBeLessThanOrEqual(16);
    expect(chosen.slice(0, 10)).toEqual(Array.from({ length: 10 }, (_, k) => `a${String(990 + k).padStart(4, "0")}`).slice(0, Math.min(10, chosen.length)));
  });

  it("spreads many like tasks over many agents, all of them when the tasks need it", () => {
    const many = Array.from({ length: 200 }, (_, i) => agent(i, 0));
    const tasks = Array.from({ length: 1000 }, (_, i) => task(`t${i}`));
    expect(sampleCandidates(many, tasks)).toHaveLength(200);
  });

  it("keeps the one agent that can run a task, however loaded", () => {
    const many = Array.from({ length: 500 }, (_, i) => (i === 321 ? agent(i, 3, ["rare"]) : agent(i, 0)));
    const chosen = sampleCandidates(many, [task("common"), task("special", ["rare"])]).map((a) => a.agentId);
    expect(chosen).toContain("a0321");
  });
});
