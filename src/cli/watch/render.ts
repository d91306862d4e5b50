import { AgentState } from "../../../gen/baton/v1/common_pb.js";
import { CoordinationState, TaskState, type Task } from "../../../gen/baton/v1/control_pb.js";
import { isEnded, progressOf, type WatchModel } from "./model.js";

/** How a frame is drawn. */
export interface FrameOptions {
  /** The first line ("baton watch: localhost:50051"). */
  title: string;
  /** Terminal width and height; the frame fits them. */
  columns: number;
  rows: number;
  now?: number;
}

const BAR = 20;

/** "[██████████░░░░░░░░░░]  50%". */
export function progressBar(pct: number, width = BAR): string {
  const full = Math.round((pct / 100) * width);
  return `[${"█".repeat(full)}${"░".repeat(width - full)}] ${String(Math.round(pct)).padStart(3)}%`;
}

const lower = (names: Record<number, string>, v: number) => (names[v] ?? String(v)).toLowerCase();
const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, Math.max(0, n - 1))}…` : s.padEnd(n));

const ORDER: Partial<Record<TaskState, number>> = { [TaskState.RUNNING]: 0, [TaskState.ASSIGNED]: 1, [TaskState.PENDING]: 2 };

function taskLine(t: Task, width: number): string {
  const pct = progressOf(t);
  const state = lower(TaskState, t.state);
  const where = t.assignedAgents.join(",");
  const bar = pct !== undefined ? progressBar(pct) : t.state === TaskState.RUNNING ? `[${"·".repeat(BAR)}]    ` : "";
  const tail = isEnded(t) ? t.reason : `${t.attempts.length > 1 ? `attempt ${t.attempts.length}` : ""}`;
  return cut(`  ${cut(t.spec!.taskId, 18)} ${cut(state, 13)} ${cut(where, 22)} ${cut(bar, BAR + 7)} ${tail}`, width).trimEnd();
}

/** One frame of the live view, as lines that fit the terminal. */
export function renderFrame(model: WatchModel, options: FrameOptions): string {
  const width = Math.max(40, options.columns);
  const c = model.counts();
  const lines: string[] = [];
  lines.push(cut(`${options.title}  ·  ${model.agents.size} agents  ·  tasks: ${c.running} running, ${c.assigned} assigned, ${c.pending} pending, ${c.succeeded} succeeded, ${c.dead_lettered} dead-lettered, ${c.cancelled} cancelled`, width).trimEnd());
  lines.push("");
  lines.push("AGENTS");
  // An agent's event comes with its state changes only; what it holds now is read off the open tasks.
  const holding = new Map<string, number>();
  for (const t of model.tasks.values()) if (!isEnded(t)) for (const id of t.assignedAgents) holding.set(id, (holding.get(id) ?? 0) + 1);
  for (const a of [...model.agents.values()].sort((x, y) => x.agentId.localeCompare(y.agentId))) {
    const held = a.state === AgentState.ONLINE || a.state === AgentState.DRAINING ? Math.max(a.inFlight, holding.get(a.agentId) ?? 0) : 0;
    const load = a.maxInFlight ? progressBar(Math.min(100, (held / a.maxInFlight) * 100), 10).replace(/\s+\d+%$/, "") : "";
    lines.push(cut(`  ${cut(a.agentId, 18)} ${cut(lower(AgentState, a.state), 13)} ${cut(`${held}/${a.maxInFlight}`, 7)} ${load} breaker ${a.breaker || "-"}  ${a.capabilities.join(",")}`, width).trimEnd());
  }
  if (model.agents.size === 0) lines.push("  (none connected)");
  // Rounds and events get a few lines each; tasks take what is left of the terminal.
  const live = [...model.rounds.values()].filter((r) => r.live);
  const roundLines = ["", `ROUNDS  (${live.length} under way)`, ...live.slice(-3).map((r) => cut(`  ${cut(r.roundId.slice(0, 8), 10)} ${cut(lower(CoordinationState, r.state), 13)} ${r.trigger}  tasks ${r.taskIds.join(",")}`, width).trimEnd())];
  const eventLines = ["", "EVENTS", ...model.recent.slice(-4).map((e) => cut(`  ${new Date(e.at).toISOString().slice(11, 19)}  ${e.topic}${e.reason ? `  (${e.reason})` : ""}`, width).trimEnd())];
  const room = Math.max(3, options.rows - lines.length - roundLines.length - eventLines.length - 3);
  const tasks = [...model.tasks.values()];
  const open = tasks.filter((t) => !isEnded(t)).sort((x, y) => (ORDER[x.state] ?? 3) - (ORDER[y.state] ?? 3));
  const ended = tasks.filter(isEnded).slice(-Math.max(0, room - open.length));
  lines.push("", "TASKS");
  const shown = [...open.slice(0, room), ...ended];
  for (const t of shown) lines.push(taskLine(t, width));
  if (open.length > room) lines.push(`  … and ${open.length - room} more open`);
  if (tasks.length === 0) lines.push("  (none yet)");
  lines.push(...roundLines, ...eventLines);
  return lines.join("\n");
}
