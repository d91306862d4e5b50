import type { Agent, ChangeEvent, Pulse, Round, Sample, Snapshot, Task } from "./model.js";
import { enumName } from "./model.js";

/** What the page shows. */
export interface ViewState {
  live: "connecting" | "live" | "reconnecting" | "refused";
  error: string;
  coordinatorId: string;
  me: Snapshot["me"] | undefined;
  agents: Agent[];
  tasks: Map<string, Task>;
  rounds: Round[];
  recent: Round[];
  counts: Record<string, number>;
  samples: Sample[];
  /** Whether the server sends the Performance Monitor's figures (it runs in this process). */
  metricsShown: boolean;
  more: boolean;
}

const MAX_FINISHED = 200;
const MAX_SAMPLES = 90;
const FINISHED = new Set(["succeeded", "cancelled"]);
const OPEN_RUNNING = new Set(["assigned", "running"]);

/** The state before the first snapshot. */
export function initialState(): ViewState {
  return { live: "connecting", error: "", coordinatorId: "", me: undefined, agents: [], tasks: new Map(), rounds: [], recent: [], counts: {}, samples: [], metricsShown: true, more: false };
}

function withPulse(state: ViewState, pulse: Pulse): ViewState {
  const samples = pulse.metrics
    ? [
        ...state.samples,
        {
          at: Date.parse(pulse.at),
          latencyP50: pulse.metrics.messageLatency?.p50Ms ?? 0,
          latencyP99: pulse.metrics.messageLatency?.p99Ms ?? 0,
          successRate: (pulse.metrics.rounds?.successRate ?? 0) * 100,
          completionP50: pulse.metrics.directiveCompletionTime?.p50Ms ?? 0,
          completionP99: pulse.metrics.directiveCompletionTime?.p99Ms ?? 0,
        },
      ].slice(-MAX_SAMPLES)
    : state.samples;
  return {
    ...state,
    coordinatorId: pulse.coordination.coordinatorId ?? state.coordinatorId,
    agents: pulse.agents,
    rounds: pulse.coordination.rounds ?? [],
    recent: pulse.coordination.recent ?? [],
    counts: pulse.counts,
    samples,
    metricsShown: pulse.metrics !== null,
  };
}

/** The whole state again (first connect, or a resume that was not possible). */
export function applySnapshot(state: ViewState, snap: Snapshot): ViewState {
  const tasks = new Map<string, Task>();
  // Finished tasks seen live stay; the snapshot holds only active ones and dead letters.
  for (const [id, t] of state.tasks) if (FINISHED.has(enumName(t.state, "TASK_STATE_"))) tasks.set(id, t);
  for (const t of snap.tasks) if (t.spec) tasks.set(t.spec.taskId, t);
  return { ...withPulse(state, snap), tasks, me: snap.me, more: snap.more, live: "live", error: "" };
}

/** The figures that change without events. */
export function applyPulse(state: ViewState, pulse: Pulse): ViewState {
  return withPulse(state, pulse);
}

/** One event of the coordinator's log. */
export function applyChange(state: ViewState, change: ChangeEvent): ViewState {
  if (change.task?.spec) {
    const tasks = new Map(state.tasks);
    const id = change.task.spec.taskId;
    const before = tasks.get(id);
    let task = change.task;
    // Task events do not carry progress (it has its own events, which may come first): the same attempt keeps what it reported.
    if (!task.progress && before?.progress && (before.attempts ?? []).length === (task.attempts ?? []).length && OPEN_RUNNING.has(enumName(task.state, "TASK_STATE_"))) {
      task = { ...task, progress: before.progress };
    }
    // Re-inserted last: the table lists tasks by their latest change.
    tasks.delete(id);
    tasks.set(id, task);
    let finished = 0;
    for (const t of tasks.values()) if (FINISHED.has(enumName(t.state, "TASK_STATE_"))) finished++;
    for (const [key, t] of tasks) {
      if (finished <= MAX_FINISHED) break;
      if (FINISHED.has(enumName(t.state, "TASK_STATE_"))) {
        tasks.delete(key);
        finished--;
      }
    }
    return { ...state, tasks };
  }
  if (change.progress?.taskId) {
    const before = state.tasks.get(change.progress.taskId);
    // Progress of a task that has ended since (events arrive in order) changes nothing.
    if (!before || !OPEN_RUNNING.has(enumName(before.state, "TASK_STATE_"))) return state;
    const tasks = new Map(state.tasks);
    tasks.set(change.progress.taskId, { ...before, progress: change.progress });
    return { ...state, tasks };
  }
  if (change.agent) {
    const agent = change.agent;
    const before = state.agents.find((a) => a.agentId === agent.agentId);
    const next: Agent = { ...agent, utilization: before?.utilization ?? null };
    const agents = before ? state.agents.map((a) => (a.agentId === agent.agentId ? next : a)) : [...state.agents, next].sort((a, b) => (a.agentId < b.agentId ? -1 : 1));
    return { ...state, agents };
  }
  if (change.round) {
    const round = change.round;
    const ended = enumName(round.state, "COORDINATION_STATE_") === "idle";
    const rounds = state.rounds.filter((r) => r.roundId !== round.roundId);
    const recent = state.recent.filter((r) => r.roundId !== round.roundId);
    return ended ? { ...state, rounds, recent: [round, ...recent].slice(0, 20) } : { ...state, rounds: [...rounds, round], recent };
  }
  return state;
}
