import { COMMANDS } from "./command-table.js";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { fromJson, type JsonObject, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { Priority } from "../../gen/baton/v1/common_pb.js";
import { ExplainTaskResponseSchema, TaskSchema, TaskSpecSchema, TaskState, type AgentExplanation, type Task, type TaskSpec } from "../../gen/baton/v1/control_pb.js";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { UsageError } from "./exit.js";
import { enumLabel, messageJson, render, table, timeCell, type Column, type Printable } from "./output.js";
import { withControl, type ClientCommandOptions } from "./client-command.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** The states a terminal task can be in. */
const TERMINAL = new Set([TaskState.SUCCEEDED, TaskState.DEAD_LETTERED, TaskState.CANCELLED]);

/** "50%" or "" from a task's latest progress (GetTask carries it while the task runs). */
export function taskProgress(task: Task): number | undefined {
  const pct = task.progress?.metrics?.completionPercentage;
  return typeof pct === "number" ? pct : undefined;
}

/** The table and JSON of tasks. */
export function taskPrintable(tasks: readonly Task[], single = false, footer?: string): Printable<Task> {
  const columns: Array<Column<Task>> = [
    ["TASK", (t) => t.spec?.taskId ?? ""],
    ["STATE", (t) => enumLabel(TaskState, t.state)],
    ["PRIORITY", (t) => enumLabel(Priority, t.spec?.priority ?? 0)],
    ["AGENTS", (t) => t.assignedAgents.join(",")],
    ["ATTEMPTS", (t) => String(t.attempts.length)],
    ["PROGRESS", (t) => (taskProgress(t) !== undefined ? `${Math.round(taskProgress(t)!)}%` : "")],
    ["UPDATED", (t) => timeCell(t.updatedAt)],
    ["REASON", (t) => t.reason],
  ];
  return { items: tasks, single, json: (t) => messageJson(TaskSchema, t), columns, ...(footer ? { footer } : {}) };
}

function parseJsonObject(text: string, what: string): JsonObject {
  try {
    const value = JSON.parse(text) as JsonValue;
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not an object");
    return value;
  } catch (err) {
    throw new UsageError(`${what} must be a JSON object: ${(err as Error).message}`);
  }
}

function pairs(values: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values ?? []) {
    const i = v.indexOf("=");
    if (i <= 0) throw new UsageError(`${flag} must be key=value, got ${JSON.stringify(v)}`);
    out[v.slice(0, i)] = v.slice(i + 1);
  }
  return out;
}

function wholeNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} must be a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

interface SubmitFlags {
  spec?: string;
  capability?: string[];
  priority?: string;
  input?: string;
  label?: string[];
  targetAgent?: string;
  targetLabel?: string[];
  resource?: string[];
  coalition?: string;
  coalitionSize?: string;
  maxAttempts?: string;
  deadline?: string;
  wait?: boolean;
}

/** A TaskSpec from `task submit`'s flags (on top of --spec FILE, if given). */
export function specFromFlags(taskId: string | undefined, flags: SubmitFlags): TaskSpec {
  let base: MessageInitShape<typeof TaskSpecSchema> = {};
  if (flags.spec) {
    const text = readFileSync(flags.spec, "utf8");
    try {
      base = fromJson(TaskSpecSchema, parseJsonObject(text, `--spec ${flags.spec}`));
    } catch (err) {
      throw new UsageError(`--spec ${flags.spec}: ${(err as Error).message}`);
    }
  }
  const spec = fromJson(TaskSpecSchema, {}) as TaskSpec;
  Object.assign(spec, base);
  spec.taskId = taskId ?? (spec.taskId || `task-${randomBytes(4).toString("hex")}`);
  if (flags.capability?.length) spec.requiredCapabilities = flags.capability.flatMap((c) => c.split(",")).filter(Boolean);
  if (flags.priority) {
    const p = Priority[flags.priority.toUpperCase() as keyof typeof Priority];
    if (typeof p !== "number" || p === Priority.UNSPECIFIED) throw new UsageError(`--priority must be low, normal, high or critical, got ${JSON.stringify(flags.priority)}`);
    spec.priority = p;
  }
  if (flags.input) spec.input = parseJsonObject(flags.input, "--input");
  if (flags.label?.length) spec.labels = { ...spec.labels, ...pairs(flags.label, "--label") };
  if (flags.targetAgent || flags.targetLabel?.length) {
    spec.target = fromJson(TaskSpecSchema.field.target!.message!, { agentId: flags.targetAgent ?? "", labels: pairs(flags.targetLabel, "--target-label") }) as TaskSpec["target"];
  }
  for (const r of flags.resource ?? []) {
    // kind[:amount] asks for any resource of that kind; @id[:amount] for one resource.
    const m = /^(@?)([^:]+)(?::(\d+(?:\.\d+)?))?$/.exec(r);
    if (!m) throw new UsageError(`--resource must be kind[:amount] or @resource_id[:amount], got ${JSON.stringify(r)}`);
    const amount = m[3] !== undefined ? Number(m[3]) : 0;
    spec.resources.push(fromJson(TaskSpecSchema.field.resources!.message!, m[1] ? { resourceId: m[2]!, amount } : { kind: m[2]!, amount }) as TaskSpec["resources"][number]);
  }
  if (flags.coalition || flags.coalitionSize) {
    spec.coalition = fromJson(TaskSpecSchema.field.coalition!.message!, { roles: (flags.coalition ?? "").split(",").filter(Boolean), size: wholeNumber(flags.coalitionSize, "--coalition-size") ?? 0 }) as TaskSpec["coalition"];
  }
  const attempts = wholeNumber(flags.maxAttempts, "--max-attempts");
  if (attempts !== undefined) spec.maxAttempts = attempts;
  if (flags.deadline) {
    const when = /^\d+(s|m|h)$/.test(flags.deadline) ? new Date(Date.now() + Number(flags.deadline.slice(0, -1)) * { s: 1e3, m: 6e4, h: 3.6e6 }[flags.deadline.slice(-1) as "s"]) : new Date(flags.deadline);
    if (Number.isNaN(when.getTime())) throw new UsageError(`--deadline must be a time (2030-01-01T00:00:00Z) or a duration from now (90s, 5m, 2h), got ${JSON.stringify(flags.deadline)}`);
    spec.deadline = timestampFromDate(when);
  }
  return spec;
}

/** Adds `baton task ...`. */
export function addTaskCommands(program: Command, options: ClientCommandOptions): void {
  const task = program.command("task").description(COMMANDS.task);
  const read = options.readCommand;

  read(task.command("submit").argument("[task-id]", "the task's id (default: a random task-xxxxxxxx); the same id submits once").description("submit a task"))
    .option("--spec <file>", "a TaskSpec as JSON (the flags below override it)")
    .option("-c, --capability <name>", "a capability the agent needs (repeat, or comma-separate)", collect)
    .option("--priority <level>", "low, normal, high or critical")
    .option("--input <json>", "the task's input, a JSON object")
    .option("--label <key=value>", "a label of the task (repeat)", collect)
    .option("--target-agent <id>", "only this agent may take it")
    .option("--target-label <key=pattern>", "only agents whose label matches (* wildcards; repeat)", collect)
    .option("--resource <kind[:amount]|@id[:amount]>", "a resource it needs (repeat)", collect)
    .option("--coalition <roles>", "a coalition: the roles to fill, comma-separated")
    .option("--coalition-size <n>", "how many agents the coalition needs (default: one per role)")
    .option("--max-attempts <n>", "attempts before it is dead-lettered")
    .option("--deadline <time|duration>", "when it must be done: an RFC 3339 time or 90s, 5m, 2h")
    .option("--wait", "wait until the task ends; exit 1 unless it succeeded")
    .action(withControl(options, async ({ control, format, out }, taskId: string | undefined, flags: SubmitFlags) => {
      const spec = specFromFlags(taskId, flags);
      if (!flags.wait) {
        const res = await control.submitTask({ task: spec });
        return out(render(format, taskPrintable([res.task!], true)));
      }
      // Watch first, then submit: no end can slip between the two.
      const abort = new AbortController();
      // Every task event, filtered here: the id need not be escaped into a topic segment.
      const events = control.watchEvents({ topics: ["task.#"] }, { signal: abort.signal })[Symbol.asyncIterator]();
      const first = events.next();
      const res = await control.submitTask({ task: spec });
      let current = res.task!;
      let next = first;
      while (!TERMINAL.has(current.state)) {
        const { value, done } = await next;
        if (done) break;
        if (value.event?.kind.case === "task" && value.event.kind.value.spec?.taskId === spec.taskId) current = value.event.kind.value;
        next = events.next();
      }
      abort.abort();
      void next.catch(() => {});
      out(render(format, taskPrintable([current], true)));
      if (current.state !== TaskState.SUCCEEDED) {
        throw Object.assign(new Error(`task ${spec.taskId} ended ${enumLabel(TaskState, current.state)}${current.reason ? `: ${current.reason}` : ""}`), { exitCode: 1 });
      }
    }));

  read(task.command("get").argument("<task-id>").description("show one task")).action(withControl(options, async ({ control, format, out }, taskId: string) => {
    const res = await control.getTask({ taskId });
    out(render(format, taskPrintable([res.task!], true)));
  }));

  read(task.command("list").description("list tasks, oldest first"))
    .option("--state <state>", "only tasks in this state: pending, assigned, running, succeeded, dead_lettered, cancelled (repeat)", collect)
    .option("--limit <n>", "tasks a page (at most 1000)", "100")
    .option("--page-token <token>", "start after this task (a previous page's next token)")
    .option("--all", "follow every page")
    .action(withControl(options, async ({ control, format, out }, flags: { state?: string[]; limit: string; pageToken?: string; all?: boolean }) => {
      const states = (flags.state ?? []).flatMap((s) => s.split(",")).map((s) => {
        const v = TaskState[s.toUpperCase() as keyof typeof TaskState];
        if (typeof v !== "number" || v === TaskState.UNSPECIFIED) throw new UsageError(`--state must be pending, assigned, running, succeeded, dead_lettered or cancelled, got ${JSON.stringify(s)}`);
        return v;
      });
      const pageSize = wholeNumber(flags.limit, "--limit")!;
      const tasks: Task[] = [];
      let pageToken = flags.pageToken ?? "";
      for (;;) {
        const page = await control.listTasks({ states, pageSize, pageToken });
        tasks.push(...page.tasks);
        pageToken = page.nextPageToken;
        if (!flags.all || !pageToken) break;
      }
      out(render(format, taskPrintable(tasks, false, pageToken ? `more: --page-token ${pageToken} (or --all)` : undefined)));
    }));

  read(task.command("cancel").argument("<task-id>").description("cancel a task; the agent running it is told"))
    .option("--reason <text>", "why")
    .action(withControl(options, async ({ control, format, out }, taskId: string, flags: { reason?: string }) => {
      const res = await control.cancelTask({ taskId, reason: flags.reason ?? "" });
      out(render(format, taskPrintable([res.task!], true)));
    }));

  addExplain(task, options);

  read(task.command("resubmit").argument("<task-id>").description("submit a dead-lettered task again")).action(withControl(options, async ({ control, format, out }, taskId: string) => {
    const res = await control.resubmitTask({ taskId });
    out(render(format, taskPrintable([res.task!], true)));
  }));
}

/** Adds `baton task explain`: why a task waits, agent by agent (Control.ExplainTask). */
function addExplain(task: Command, options: ClientCommandOptions): void {
  options
    .readCommand(task.command("explain").argument("<task-id>").description("why a task is waiting: every agent and what keeps it from the task (or why the chosen agents won)"))
    .action(withControl(options, async ({ control, format, out }, taskId: string) => {
      const res = await control.explainTask({ taskId });
      if (format !== "table") return out(render(format, { items: [res], single: true, json: (r) => messageJson(ExplainTaskResponseSchema, r), columns: [] }));
      const t = res.task!;
      const head = [
        `task ${taskId}: ${enumLabel(TaskState, t.state)}${t.assignedAgents.length ? ` on ${t.assignedAgents.join(", ")}` : ""}`,
        res.summary,
        `${res.eligibleCount} of ${res.agents.length} agents could take it now${res.strategy ? ` (planner: ${res.strategy})` : ""}${res.roundId ? `; round ${res.roundId}` : ""}${res.notBefore ? `; retry not before ${timeCell(res.notBefore)}` : ""}`,
        "",
      ].join("\n");
      const why = (a: AgentExplanation) => (a.chosen ? a.reason || "chosen" : a.obstacles.map((o) => o.detail).join("; ") || (a.eligible ? "eligible" : ""));
      out(`${head}\n${res.agents.length ? table(res.agents, [["AGENT", (a) => a.agentId], ["STATE", (a) => enumLabel(AgentState, a.state)], ["SLOTS", (a) => `${a.inFlight}/${a.maxInFlight}`], ["", (a) => (a.chosen ? "chosen" : a.eligible ? "eligible" : "blocked")], ["WHY", why]]) : "(no agents known)\n"}`);
    }));
}

/** Milliseconds from a task's creation to its last change. */
export function taskAgeMs(task: Task): number {
  return task.createdAt && task.updatedAt ? timestampMs(task.updatedAt) - timestampMs(task.createdAt) : 0;
}
