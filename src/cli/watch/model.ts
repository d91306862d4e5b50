import { timestampMs } from "@bufbuild/protobuf/wkt";
import { TaskState, type Agent, type CoordinationRound, type Event, type Task } from "../../../gen/baton/v1/control_pb.js";

/** A round as the view shows it: `live` while it is under way. */
export type ViewRound = CoordinationRound & { live: boolean };

const TERMINAL = new Set([TaskState.SUCCEEDED, TaskState.DEAD_LETTERED, TaskState.CANCELLED]);

/** Whether a task has ended. */
export function isEnded(task: Task): boolean {
  return TERMINAL.has(task.state);
}

/** The latest progress of a running task, 0..100, if its agent reported any. */
export function progressOf(task: Task): number | undefined {
  const pct = task.progress?.metrics?.completionPercentage;
  return typeof pct === "number" && !isEnded(task) ? Math.max(0, Math.min(100, pct)) : undefined;
}

/** What `baton watch` shows: agents, tasks and rounds, kept up to date from a snapshot and then WatchEvents. */
export class WatchModel {
  readonly agents = new Map<string, Agent>();
  readonly tasks = new Map<string, Task>();
  readonly rounds = new Map<string, ViewRound>();
  /** The last events, newest last, as [topic, reason]. */
  readonly recent: Array<{ at: number; topic: string; reason: string }> = [];
  /** Events applied since the start. */
  events = 0;
  /** Tasks that went back to pending after an attempt (an agent lost, a rejection): replanned. */
  replanned = 0;

  /** When the snapshot was taken, by the server's clock (its newest time): replayed events before it are old news. */
  private snapshotAt = 0;

  /** Takes the answers of ListAgents, ListTasks and GetCoordination. */
  snapshot(agents: readonly Agent[], tasks: readonly Task[], live: readonly CoordinationRound[], recent: readonly CoordinationRound[]): void {
    const times = [...tasks.map((t) => t.updatedAt), ...live.map((r) => r.updatedAt), ...recent.map((r) => r.updatedAt), ...agents.map((a) => a.lastSeen)];
    this.snapshotAt = Math.max(0, ...times.map((t) => (t ? timestampMs(t) : 0)));
    for (const a of agents) this.agents.set(a.agentId, a);
    for (const t of tasks) if (!this.tasks.has(t.spec!.taskId)) this.tasks.set(t.spec!.taskId, t);
    for (const r of recent) this.rounds.set(r.roundId, Object.assign(r, { live: false }));
    for (const r of live) this.rounds.set(r.roundId, Object.assign(r, { live: true }));
  }

  /** Applies one event; returns whether anything shown changed. */
  apply(event: Event): boolean {
    if (event.timestamp && timestampMs(event.timestamp) < this.snapshotAt) return false;
    this.events++;
    const kind = event.kind;
    if (kind.case === "task") {
      const id = kind.value.spec!.taskId;
      const before = this.tasks.get(id);
      // A replayed event may be older than the snapshot's copy of the task.
      if (before?.updatedAt && kind.value.updatedAt && timestampMs(kind.value.updatedAt) < timestampMs(before.updatedAt)) return false;
      // A progress event may arrive after the task ended on another path: an end is final.
      if (before && isEnded(before) && !isEnded(kind.value)) return false;
      if (before && before.state !== TaskState.PENDING && kind.value.state === TaskState.PENDING && kind.value.attempts.length > 0) this.replanned++;
      this.tasks.set(id, kind.value);
    } else if (kind.case === "progress") {
      // task.<id>.progress carries the agent's ProgressUpdate; the bar reads it from the task.
      const task = this.tasks.get(kind.value.taskId);
      if (!task || isEnded(task)) return false;
      this.tasks.set(kind.value.taskId, { ...task, progress: kind.value });
      return true;
    } else if (kind.case === "agent") {
      this.agents.set(kind.value.agentId, kind.value);
    } else if (kind.case === "round") {
      const r = kind.value;
      const ended = event.topic.endsWith(".idle") || event.topic.endsWith(".error");
      this.rounds.set(r.roundId, Object.assign(r, { live: !ended }));
      // Only the last rounds matter to a viewer; old ones are dropped so a long watch stays small.
      if (this.rounds.size > 200) for (const [id, old] of this.rounds) if (!old.live && this.rounds.size > 100) this.rounds.delete(id);
    }
    if (!event.topic.endsWith(".progress")) {
      this.recent.push({ at: event.timestamp ? timestampMs(event.timestamp) : Date.now(), topic: event.topic, reason: event.reason });
      if (this.recent.length > 50) this.recent.splice(0, this.recent.length - 50);
    }
    return true;
  }

  /** Tasks by state. */
  counts(): Record<"pending" | "assigned" | "running" | "succeeded" | "dead_lettered" | "cancelled", number> {
    const c = { pending: 0, assigned: 0, running: 0, succeeded: 0, dead_lettered: 0, cancelled: 0 };
    for (const t of this.tasks.values()) {
      const name = TaskState[t.state]?.toLowerCase() as keyof typeof c | undefined;
      if (name && name in c) c[name]++;
    }
    return c;
  }
}
