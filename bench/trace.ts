// Where one task's time goes: one agent, tasks one at a time, the coordinator at log level
// debug (its protocol lines), then for each task the time from the submit to each protocol
// message the coordinator logged for it, as medians. The debug lines cost time themselves,
// so the total is above the latency scenario's; the split is what this is for.
//   node --import tsx bench/trace.ts [--tasks 200] [--profile] [--level info]
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Fleet } from "./lib/agents.js";
import { benchTask, openDriver, warmUp } from "./lib/control.js";
import { startCoordinator } from "./lib/coordinator.js";
import { benchPki } from "./lib/pki.js";
import { percentile } from "./lib/results.js";

const { values } = parseArgs({ options: { tasks: { type: "string", default: "200" }, profile: { type: "boolean", default: false }, keep: { type: "string" }, level: { type: "string", default: "debug" } } });
const tasks = Number(values.tasks);
const pki = await benchPki(1);
const coordinator = await startCoordinator({ pki, config: { log: { level: values.level } }, ...(values.profile ? { profileDir: join(process.cwd(), ".baton-tmp/bench-profiles") } : {}) });
const fleet = new Fleet({ pki, address: coordinator.address, mode: "complete" });
const driver = openDriver(pki, coordinator.address, ["task.*.succeeded"]);
const submitted = new Map<string, number>();
const total: number[] = [];
const answered: number[] = [];
try {
  await fleet.add(1, 60_000);
  await warmUp(driver, "succeeded", 120_000);
  for (let i = 0; i < tasks; i++) {
    const id = `trace-${i}`;
    const start = performance.now();
    submitted.set(id, Date.now());
    await driver.control.submitTask({ task: benchTask(id) });
    answered.push(performance.now() - start);
    const end = await driver.watch.when(id, "succeeded", 60_000);
    total.push(end - start);
  }
  if (values.keep) copyFileSync(coordinator.logFile, values.keep);
  // Protocol lines carry the round's id as correlation id: the round's plan line names its task.
  type Line = { timestamp: string; msg: string; round_id?: string; tasks?: string[]; correlation_id?: string; task_id?: string; message_type?: string; source?: string; destination?: string; state?: string };
  const lines = readFileSync(coordinator.logFile, "utf8").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Line);
  const roundTask = new Map<string, string>();
  for (const e of lines) if (e.msg === "round plan" && e.round_id && e.tasks?.length === 1) roundTask.set(e.round_id, e.tasks[0]!);
  const steps = new Map<string, number[]>();
  const agentName = (s: string | undefined) => (s ?? "").replace(/bench-agent-\d+/, "agent");
  for (const e of lines) {
    const ref = e.correlation_id ?? e.round_id;
    const id = e.task_id ?? (ref ? (roundTask.get(ref) ?? ref) : undefined);
    const at = id ? submitted.get(id) : undefined;
    if (at === undefined) continue;
    const name = `${e.msg}${e.state ? ` ${e.state}` : ""}${e.message_type ? ` ${e.message_type}` : ""}${e.source ? ` ${agentName(e.source)}->${agentName(e.destination)}` : ""}`;
    const list = steps.get(name) ?? [];
    list.push(Date.parse(e.timestamp) - at);
    steps.set(name, list);
  }
  total.sort((a, b) => a - b);
  answered.sort((a, b) => a - b);
  console.log(`submit -> answered (driver): p50 ${percentile(answered, 0.5).toFixed(2)} ms, p99 ${percentile(answered, 0.99).toFixed(2)} ms`);
  console.log(`submit -> succeeded event (driver): p50 ${percentile(total, 0.5).toFixed(2)} ms, p99 ${percentile(total, 0.99).toFixed(2)} ms over ${total.length} tasks`);
  const rows = [...steps].map(([name, ms]) => [name, percentile(ms.sort((a, b) => a - b), 0.5), ms.length] as const).sort((a, b) => a[1] - b[1]);
  for (const [name, p50, n] of rows) console.log(`  +${p50.toFixed(1).padStart(6)} ms  ${name} (${n})`);
} finally {
  driver.close();
  await fleet.stop();
  await coordinator.stop();
}
