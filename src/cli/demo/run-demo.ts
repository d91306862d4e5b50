import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Control, TaskState, type Task, type TaskSpec } from "../../../gen/baton/v1/control_pb.js";
import { Priority } from "../../../gen/baton/v1/common_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { TaskSpecSchema } from "../../../gen/baton/v1/control_pb.js";
import { buildConfig } from "../../config.js";
import { createLogger } from "../../logging.js";
import { clientChannelOptions, clientCredentials, createChannel, createClient, readTlsFiles } from "../../rpc/index.js";
import { ensureDevelopmentCertificates, issueToDirectory } from "../../security/index.js";
import { BatonServer } from "../../server/index.js";
import { startLiveView } from "../watch/live.js";
import { isEnded } from "../watch/model.js";
import type { DemoAgentSpec } from "./agent-process.js";

/** How big the demo is. */
export interface DemoOptions {
  /** Agent processes; at least 3 (a planner and an executor survive the one killed). Default 5. */
  agents: number;
  /** Tasks submitted, one every submitEveryMs. Default 30. */
  tasks: number;
  /** About how long a task runs on its agent, ms. Default 1500. */
  workMs: number;
  /** Kill one agent (SIGKILL) a third of the way in, so its work is replanned. Default true. */
  kill: boolean;
  /** Redraw the view in place (a terminal) or print one line per event. */
  tty: boolean;
  /** Gives up waiting for the tasks after this long, ms. Default 180000. */
  timeoutMs: number;
  stream?: NodeJS.WriteStream;
}

/** What happened, for the final report. */
export interface DemoReport {
  agents: number;
  tasks: number;
  seconds: number;
  tasksPerSecond: number;
  states: Record<string, number>;
  coalitionTasks: number;
  resourceTasks: number;
  killed?: { agent: string; heldTasks: string[] };
  /** Tasks that took more than one attempt (their agent was killed, or they were rejected). */
  replanned: string[];
  latencyMs: { p50: number; p95: number; max: number };
  byAgent: Record<string, number>;
  unfinished: number;
}

const SUBMIT_EVERY_MS = 120;

function agentSpecs(count: number, address: string, certsDir: string): DemoAgentSpec[] {
  return Array.from({ length: count }, (_, i) => ({
    address,
    agentId: `worker_${i + 1}`,
    certsDir,
    // Every agent runs plain work; planners and executors alternate so coalitions can form; two offer a GPU.
    capabilities: ["python", i % 2 === 0 ? "planner" : "executor"],
    resources: i < 2 ? [{ resourceId: `gpu_${i}`, kind: "gpu", capacity: 1 }] : [],
    maxInFlight: 3,
  }));
}

function taskSpec(i: number, workMs: number): MessageInitShape<typeof TaskSpecSchema> {
  const work = Math.round(workMs * (0.5 + ((i * 37) % 100) / 100));
  const id = `demo-${String(i + 1).padStart(3, "0")}`;
  switch (i % 6) {
    case 3:
      return { taskId: id, coalition: { roles: ["planner", "executor"] }, input: { work_ms: work }, labels: { kind: "coalition" } };
    case 4:
      return { taskId: id, requiredCapabilities: ["python"], resources: [{ kind: "gpu", amount: 1 }], input: { work_ms: work }, labels: { kind: "gpu" } };
    case 5:
      return { taskId: id, requiredCapabilities: ["python"], priority: Priority.HIGH, input: { work_ms: work }, labels: { kind: "urgent" } };
    default:
      return { taskId: id, requiredCapabilities: ["python"], input: { work_ms: work }, labels: { kind: "plain" } };
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : 0;
}

/** The agent script beside this file: .ts when run from source (through tsx), .js from dist/. */
function agentScript(): string {
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  return new URL(`./agent-process${ext}`, import.meta.url).pathname;
}

/** Runs the whole demo and cleans up after itself (also on SIGINT/SIGTERM); resolves with its report. */
export async function runDemo(options: DemoOptions): Promise<DemoReport> {
  if (options.agents < 3) throw new Error("the demo needs at least 3 agents");
  const stream = options.stream ?? process.stdout;
  const dir = mkdtempSync(join(tmpdir(), "baton-demo-"));
  const children: ChildProcess[] = [];
  let server: BatonServer | undefined;
  let closeChannel = () => {};
  let stopView = () => {};
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    stopView();
    closeChannel();
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? Promise.race([once(c, "exit"), new Promise((r) => setTimeout(r, 3000).unref())]) : undefined)));
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await server?.shutdown({ graceMs: 1000 }).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  // Last resort when the process goes some other way: no agent outlives the demo.
  const onExit = () => {
    for (const c of children) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    void cleanup().then(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.on("exit", onExit);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const certs = join(dir, "certs");
    const dev = await ensureDevelopmentCertificates({ dir: certs });
    const config = buildConfig({
      listen: "127.0.0.1:0",
      // A free loopback port: the dashboard shows the demo live.
      adminListen: "127.0.0.1:0",
      coordinatorId: "baton-demo",
      tls: { certsDir: certs },
      store: { kind: "memory" },
      // Short timers, so the killed agent is declared lost and its work replanned within seconds.
      session: { heartbeatIntervalMs: 1000, heartbeatMisses: 2, disconnectGraceMs: 1500 },
      delivery: { leaseMs: 30_000 },
      log: { level: "warn" },
    });
    server = new BatonServer({ config, logger: createLogger({ level: "warn", destination: createWriteStream(join(dir, "coordinator.log")) }) });
    const port = await server.start();
    if (server.dashboardUrl) stream.write(`dashboard: ${server.dashboardUrl}\n`);
    const address = `localhost:${port}`;
    const specs = agentSpecs(options.agents, address, certs);
    await Promise.all(specs.map((s) => issueToDirectory({ dir: certs, role: "managed_agent", name: s.agentId })));
    const ready = specs.map((spec) => {
      const child = fork(agentScript(), [JSON.stringify(spec)], { execArgv: process.execArgv, stdio: ["ignore", "ignore", "pipe", "ipc"] });
      children.push(child);
      return new Promise<void>((resolve, reject) => {
        child.once("message", () => resolve());
        child.once("exit", (code) => reject(new Error(`agent ${spec.agentId} exited (${code}) before connecting`)));
      });
    });
    await Promise.all(ready);
    const tls = readTlsFiles({ caFile: dev.caPath, certFile: dev.operator.certPath, keyFile: dev.operator.keyPath });
    const channel = createChannel(address, clientCredentials(tls), clientChannelOptions());
    closeChannel = () => channel.close();
    const control = createClient(Control, channel);
    let wake: () => void = () => {};
    const view = startLiveView(control, { title: `baton demo (${options.tasks} tasks)`, tty: options.tty, stream, onEvent: () => wake() });
    stopView = view.stop;
    void view.done.catch(() => {});
    await view.ready;
    const started = Date.now();
    const ids: string[] = [];
    let killed: DemoReport["killed"];
    const killOne = () => {
      // The busiest agent goes (the most open tasks assigned to it), among those whose roles and
      // GPU another agent also has: the rest of the stream can still run without it.
      const held = new Map<string, string[]>();
      for (const t of view.model.tasks.values()) if (!isEnded(t)) for (const a of t.assignedAgents) held.set(a, [...(held.get(a) ?? []), t.spec!.taskId]);
      const offers = (s: DemoAgentSpec) => [...s.capabilities, ...s.resources.map((r) => `resource:${r.kind}`)];
      const replaceable = specs.filter((s) => offers(s).every((o) => specs.some((other) => other !== s && offers(other).includes(o))));
      const chosen = replaceable.sort((a, b) => (held.get(b.agentId)?.length ?? 0) - (held.get(a.agentId)?.length ?? 0))[0];
      const agent = chosen?.agentId;
      const tasks = agent ? (held.get(agent) ?? []) : [];
      const child = agent && children[specs.findIndex((s) => s.agentId === agent)];
      if (!agent || !child) return;
      child.kill("SIGKILL");
      killed = { agent, heldTasks: tasks };
    };
    for (let i = 0; i < options.tasks; i++) {
      const spec = taskSpec(i, options.workMs);
      ids.push(spec.taskId!);
      await control.submitTask({ task: spec });
      if (options.kill && !killed && i >= options.tasks / 3) killOne();
      await new Promise((r) => setTimeout(r, SUBMIT_EVERY_MS));
    }
    if (options.kill && !killed) killOne();
    const deadline = Date.now() + options.timeoutMs;
    const allEnded = () => ids.every((id) => {
      const t = view.model.tasks.get(id);
      return t !== undefined && isEnded(t);
    });
    while (!allEnded() && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 1000).unref();
      });
    }
    const seconds = (Date.now() - started) / 1000;
    view.stop();
    await view.done.catch(() => {});
    const final = (await control.listTasks({ pageSize: 1000 })).tasks.filter((t) => ids.includes(t.spec!.taskId));
    return report(final, options, seconds, killed);
  } finally {
    process.off("exit", onExit);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }
}

function report(tasks: Task[], options: DemoOptions, seconds: number, killed: DemoReport["killed"]): DemoReport {
  const states: Record<string, number> = {};
  const byAgent: Record<string, number> = {};
  const latencies: number[] = [];
  for (const t of tasks) {
    const state = TaskState[t.state].toLowerCase();
    states[state] = (states[state] ?? 0) + 1;
    if (t.state === TaskState.SUCCEEDED) {
      if (t.createdAt && t.updatedAt) latencies.push(timestampMs(t.updatedAt) - timestampMs(t.createdAt));
      for (const a of t.attempts.at(-1)?.agents ?? []) byAgent[a] = (byAgent[a] ?? 0) + 1;
    }
  }
  latencies.sort((a, b) => a - b);
  const succeeded = states.succeeded ?? 0;
  const spec = (t: Task): TaskSpec => t.spec!;
  return {
    agents: options.agents,
    tasks: tasks.length,
    seconds,
    tasksPerSecond: seconds > 0 ? succeeded / seconds : 0,
    states,
    coalitionTasks: tasks.filter((t) => (spec(t).coalition?.roles.length ?? 0) > 0).length,
    resourceTasks: tasks.filter((t) => spec(t).resources.length > 0).length,
    ...(killed ? { killed } : {}),
    replanned: tasks.filter((t) => t.attempts.length > 1).map((t) => t.spec!.taskId),
    latencyMs: { p50: percentile(latencies, 50), p95: percentile(latencies, 95), max: latencies.at(-1) ?? 0 },
    byAgent,
    unfinished: options.tasks - tasks.filter(isEnded).length,
  };
}

/** The report in words. */
export function describeReport(r: DemoReport): string {
  const s = (n: number) => (n / 1000).toFixed(2);
  const states = Object.entries(r.states).map(([k, v]) => `${v} ${k.replace("_", "-")}`).join(", ");
  const lines = [
    "",
    `baton demo: ${r.tasks} tasks on ${r.agents} agents in ${r.seconds.toFixed(1)} s (${r.tasksPerSecond.toFixed(1)} tasks/s)`,
    `  outcome:     ${states}${r.unfinished ? `; ${r.unfinished} still open when the demo gave up` : ""}`,
    `  coalitions:  ${r.coalitionTasks} tasks each ran on a planner and an executor at once`,
    `  resources:   ${r.resourceTasks} tasks each held one of the two GPUs`,
    r.killed ? `  agent lost:  ${r.killed.agent} was killed (SIGKILL) holding ${r.killed.heldTasks.length} tasks (${r.killed.heldTasks.join(", ") || "none"})` : "  agent lost:  none (--no-kill)",
    `  replanned:   ${r.replanned.length} tasks needed more than one attempt${r.replanned.length ? ` (${r.replanned.join(", ")})` : ""}`,
    `  latency:     submit to done p50 ${s(r.latencyMs.p50)} s, p95 ${s(r.latencyMs.p95)} s, max ${s(r.latencyMs.max)} s`,
    `  by agent:    ${Object.entries(r.byAgent).sort(([a], [b]) => a.localeCompare(b)).map(([a, n]) => `${a} ${n}`).join(", ")}`,
    "",
    "Next: `npm start` runs a coordinator here; `baton watch` shows it live, `baton --help` lists the commands.",
    "",
  ];
  return lines.join("\n");
}
