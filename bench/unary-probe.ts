// What one Control call costs the coordinator, by kind, with no agent connected:
// `node --import tsx bench/unary-probe.ts [calls] [window]`. Prints the coordinator's CPU per
// call (its /proc times over the window) for a call that finds nothing (GetTask of an unknown
// id: the gRPC path, interceptors and auth alone), for SubmitTask (tasks stay pending: the
// submit path without delivery), and for SubmitTasks of 100. PROF=<dir> profiles the coordinator.
import { Control } from "../gen/baton/v1/control_pb.js";
import { createChannel, createClient, clientCredentials } from "../src/rpc/index.js";
import { readFileSync } from "node:fs";
import { startCoordinator } from "./lib/coordinator.js";
import { benchPki } from "./lib/pki.js";
import { readUsage } from "./lib/usage.js";
import { benchTask } from "./lib/control.js";

const calls = Number(process.argv[2] ?? 5000);
const window = Number(process.argv[3] ?? 128);
const pki = await benchPki(1);
const coordinator = await startCoordinator({ pki, ...(process.env.PROF ? { profileDir: process.env.PROF } : {}) });
const creds = clientCredentials({ ca: readFileSync(pki.caFile), cert: readFileSync(pki.operatorCert), key: readFileSync(pki.operatorKey) });
const channel = createChannel(coordinator.address, creds);
const control = createClient(Control, channel);

async function measure(label: string, n: number, perCall: number, call: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const before = readUsage(coordinator.pid)!;
  const started = performance.now();
  await Promise.all(Array.from({ length: Math.min(window, n) }, async () => {
    while (next < n) await call(next++).catch(() => {});
  }));
  const after = readUsage(coordinator.pid)!;
  const ms = performance.now() - started;
  const cpuUs = ((after.cpuMs - before.cpuMs) * 1000) / (n * perCall);
  console.log(`${label.padEnd(34)} ${String(n).padStart(6)} calls  ${((n * perCall) / (ms / 1000)).toFixed(0).padStart(7)}/s  coordinator ${cpuUs.toFixed(0).padStart(5)} us CPU per ${perCall > 1 ? "task" : "call"}  (${(((after.cpuMs - before.cpuMs) / ms) * 100).toFixed(0)} % of a core)`);
}

try {
  await control.getTask({ taskId: "warm" }).catch(() => {});
  await measure("GetTask, unknown id (NOT_FOUND)", calls, 1, () => control.getTask({ taskId: "none" }));
  await measure("GetTask, unknown id (NOT_FOUND)", calls, 1, () => control.getTask({ taskId: "none" }));
  await measure("SubmitTask (stays pending)", calls, 1, (i) => control.submitTask({ task: benchTask(`u-${i}`) }));
  await measure("SubmitTasks of 100 (stay pending)", Math.ceil(calls / 100), 100, (i) => control.submitTasks({ tasks: Array.from({ length: 100 }, (_, j) => benchTask(`b-${i}-${j}`)) }));
} finally {
  channel.close();
  await coordinator.stop();
}
