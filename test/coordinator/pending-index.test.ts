import { describe, expect, it } from "vitest";
import { PendingIndex } from "../../src/coordinator/pending-index.js";
import { planTask } from "../../src/coordinator/plan-input.js";
import type { TaskRuntime } from "../../src/coordinator/runtime.js";
import { planningOrder } from "../../src/planner/index.js";

// The index must give exactly the planner's order over the tasks a pass wants, whatever
// came and went before: it is checked against planningOrder itself, on random histories.

function rng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
}

function runtime(id: string, priority: number, submitter: string, createdMs: number): TaskRuntime {
  return {
    task: { spec: { taskId: id, priority, requiredCapabilities: [], resources: [] }, submitter, createdAt: { seconds: BigInt(Math.floor(createdMs / 1000)), nanos: (createdMs % 1000) * 1e6 } },
    excluded: new Set<string>(),
    notBefore: 0,
  } as unknown as TaskRuntime;
}

describe("the pending index", () => {
  it("reads tasks in planningOrder's order over the wanted ones, across adds, deletes and re-adds", () => {
    for (let trial = 0; trial < 40; trial++) {
      const rnd = rng(trial + 1);
      const index = new PendingIndex();
      const pending = new Set<TaskRuntime>();
      const all: TaskRuntime[] = [];
      let clock = 1_700_000_000_000;
      const steps = 200 + Math.floor(rnd() * 800);
      for (let s = 0; s < steps; s++) {
        const r = rnd();
        if (r < 0.55 || all.length === 0) {
          // Several tasks often share a millisecond: their ids break the tie.
          if (rnd() < 0.7) clock += Math.floor(rnd() * 3);
          const rt = runtime(`t${Math.floor(rnd() * 1e6).toString(36)}-${all.length}`, Math.floor(rnd() * 4), `s${Math.floor(rnd() * 5)}`, clock);
          all.push(rt);
          pending.add(rt);
          index.add(rt);
        } else if (r < 0.85) {
          const rt = all[Math.floor(rnd() * all.length)]!;
          pending.delete(rt);
          index.delete(rt);
        } else {
          // A task back to pending (a retry) keeps its age: it goes back among the old ones.
          const rt = all[Math.floor(rnd() * all.length)]!;
          pending.add(rt);
          index.add(rt);
        }
      }
      expect(index.size).toBe(pending.size);
      const skipped = new Set([...pending].filter(() => rnd() < 0.2));
      const wanted = (rt: TaskRuntime) => !skipped.has(rt);
      const expected = planningOrder([...pending].filter(wanted).map((rt) => planTask(rt))).map((t) => t.taskId);
      const got = [...index.inPlanningOrder(wanted)].map((rt) => rt.task.spec!.taskId);
      expect(got).toEqual(expected);
      // Read lazily: the first few are the same first few.
      const first: string[] = [];
      for (const rt of index.inPlanningOrder(wanted)) {
        if (first.length === 10) break;
        first.push(rt.task.spec!.taskId);
      }
      expect(first).toEqual(expected.slice(0, 10));
    }
  });

  it("keeps a group's order after most of it has left (compaction)", () => {
    const index = new PendingIndex();
    const tasks = Array.from({ length: 3000 }, (_, i) => runtime(`t${String(i).padStart(5, "0")}`, 2, "ops", 1_700_000_000_000 + i));
    for (const rt of tasks) index.add(rt);
    // The oldest go first, as a backlog drains; then some from the middle.
    for (const rt of tasks.slice(0, 2500)) index.delete(rt);
    for (const rt of tasks.slice(2600, 2700)) index.delete(rt);
    const left = [...tasks.slice(2500, 2600), ...tasks.slice(2700)].map((rt) => rt.task.spec!.taskId);
    expect([...index.inPlanningOrder(() => true)].map((rt) => rt.task.spec!.taskId)).toEqual(left);
    expect(index.size).toBe(left.length);
    index.clear();
    expect([...index.inPlanningOrder(() => true)]).toEqual([]);
  });
});
