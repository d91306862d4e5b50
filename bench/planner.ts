// Plans 10,000 tasks over 1,000 agents, several times after a warm-up, and prints the median.
// The round scenario (bench/scenarios/round.ts) reuses it for the planner's share of a round.
//   npm run bench:planner
import { pathToFileURL } from "node:url";
import { generatePlan, type PlanAgent, type PlanTask } from "../src/planner/index.js";

const CAPS = ["python", "gpu", "summarize", "search", "code"];

/** A fixed, realistic plan input: capabilities, labels, resources, some targets and coalitions. */
export function planInput(agentCount: number, taskCount: number): { tasks: PlanTask[]; agents: PlanAgent[] } {
  // A fixed PRNG: every run plans the same input.
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const agents: PlanAgent[] = Array.from({ length: agentCount }, (_, i) => ({
    agentId: `agent-${String(i).padStart(4, "0")}`,
    capabilities: new Set(CAPS.filter(() => rnd() < 0.6)),
    labels: { zone: rnd() < 0.5 ? "eu-1" : "us-1" },
    freeSlots: 16,
    load: Math.floor(rnd() * 4),
    resources: [
      { resourceId: `agent-${i}-cpu`, kind: "cpu", capacity: 8, reserved: 0 },
      { resourceId: `agent-${i}-mem`, kind: "mem", capacity: 32, reserved: 0 },
    ],
    utilization: rnd(),
  }));
  const tasks: PlanTask[] = Array.from({ length: taskCount }, (_, i) => ({
    taskId: `task-${String(i).padStart(5, "0")}`,
    priority: Math.floor(rnd() * 4),
    submitter: `submitter-${Math.floor(rnd() * 20)}`,
    order: i,
    requiredCapabilities: CAPS.filter(() => rnd() < 0.2),
    resources: [{ kind: "cpu", amount: 1 }, { kind: "mem", amount: 2 }],
    ...(rnd() < 0.2 ? { target: { labels: { zone: "eu-*" } } } : {}),
    ...(rnd() < 0.05 ? { coalition: { roles: ["python", "search"], size: 2 } } : {}),
  }));
  return { tasks, agents };
}

/** Plans the input `runs` times after a JIT warm-up; the times in ms (sorted) and how many tasks were planned. */
export function timePlanner(input: { tasks: PlanTask[]; agents: PlanAgent[] }, runs: number): { times: number[]; medianMs: number; planned: number } {
  // Warm up the JIT first: the figure is the planner's steady state, not its compilation.
  for (let w = 0; w < 3; w++) generatePlan(input);
  const times: number[] = [];
  let planned = 0;
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    const plan = generatePlan(input);
    times.push(performance.now() - t);
    planned = plan.planned.length;
  }
  times.sort((a, b) => a - b);
  return { times, medianMs: times[Math.floor(runs / 2)]!, planned };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const AGENTS = 1000;
  const TASKS = 10_000;
  const { times, medianMs, planned } = timePlanner(planInput(AGENTS, TASKS), 7);
  process.stdout.write(`runs(ms): ${times.map((t) => t.toFixed(1)).join(" ")}; planned ${planned} of ${TASKS}\n`);
  process.stdout.write(`planner: tasks=${TASKS} agents=${AGENTS} ms=${medianMs.toFixed(1)}\n`);
}
