import type { Task } from "../../gen/baton/v1/control_pb.js";

/** What the scheduler needs to know of an agent. */
export interface AgentView {
  agentId: string;
  capabilities: ReadonlySet<string>;
  labels: Readonly<Record<string, string>>;
  /** Directives it can take now (cap minus what it holds). */
  freeSlots: number;
  /** Directives it holds. */
  load: number;
}

/** One decision: this task goes to this agent. */
export interface Assignment {
  taskId: string;
  agentId: string;
}

/** Whether a label value matches a pattern with * wildcards. */
export function labelMatches(pattern: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  const re = new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
  return re.test(value);
}

/** Whether an agent may run a task: capabilities, target agent, target labels, not excluded. */
export function eligible(task: Task, agent: AgentView, excluded: ReadonlySet<string>): boolean {
  const spec = task.spec!;
  if (excluded.has(agent.agentId)) return false;
  if (spec.target?.agentId && spec.target.agentId !== agent.agentId) return false;
  for (const [key, pattern] of Object.entries(spec.target?.labels ?? {})) if (!labelMatches(pattern, agent.labels[key])) return false;
  return spec.requiredCapabilities.every((c) => agent.capabilities.has(c));
}

/**
 * Assigns pending tasks, highest priority first, then oldest, each to the least loaded
 * eligible agent with a free slot. Deterministic for a given input.
 */
export function assignTasks(pending: Task[], agents: AgentView[], excluded: (taskId: string) => ReadonlySet<string>): Assignment[] {
  const free = new Map(agents.map((a) => [a.agentId, { view: a, free: a.freeSlots, load: a.load }]));
  const order = [...pending].sort(
    (a, b) => (b.spec!.priority - a.spec!.priority) || Number((a.createdAt?.seconds ?? 0n) - (b.createdAt?.seconds ?? 0n)) || ((a.createdAt?.nanos ?? 0) - (b.createdAt?.nanos ?? 0)) || a.spec!.taskId.localeCompare(b.spec!.taskId),
  );
  const out: Assignment[] = [];
  for (const task of order) {
    let best: { view: AgentView; free: number; load: number } | undefined;
    const ex = excluded(task.spec!.taskId);
    for (const slot of free.values()) {
      if (slot.free <= 0 || !eligible(task, slot.view, ex)) continue;
      if (!best || slot.load < best.load || (slot.load === best.load && slot.view.agentId < best.view.agentId)) best = slot;
    }
    if (!best) continue;
    best.free--;
    best.load++;
    out.push({ taskId: task.spec!.taskId, agentId: best.view.agentId });
  }
  return out;
}
