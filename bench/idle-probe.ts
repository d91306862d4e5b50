// What idle agents cost the coordinator: N agents connect, then while only heartbeats flow,
// the coordinator's CPU by thread (/proc/<pid>/task) and its heap and RSS (/metrics).
//   node --import tsx bench/idle-probe.ts [agents=1000] [idle ms=20000]
//   PROF=<dir>                  a CPU profile of the coordinator into <dir>
//   BENCH_HEAP_SNAPSHOT=<file>  a heap snapshot of the coordinator after the idle time
//   CONC=<n>                    connects in flight (default 64)
import { copyFileSync, readdirSync, readlinkSync, statSync } from "node:fs";
import { Fleet } from "./lib/agents.js";
import { startCoordinator } from "./lib/coordinator.js";
import { benchPki } from "./lib/pki.js";
import { threadCpuMs } from "./lib/usage.js";

const agents = Number(process.argv[2] ?? 1000);
const idleMs = Number(process.argv[3] ?? 20_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Asks the coordinator for a heap snapshot (it was started with --heapsnapshot-signal) and copies it once written. */
async function heapSnapshot(pid: number, to: string): Promise<void> {
  const cwd = readlinkSync(`/proc/${pid}/cwd`);
  process.kill(pid, "SIGUSR2");
  let last = -1;
  for (const deadline = Date.now() + 600_000; ; ) {
    if (Date.now() > deadline) throw new Error(`no heap snapshot in ${cwd} after 10 minutes`);
    process.kill(pid, 0); // throws if the coordinator is gone
    await sleep(3000);
    const file = readdirSync(cwd).find((n) => n.endsWith(".heapsnapshot"));
    if (!file) continue;
    const size = statSync(`${cwd}/${file}`).size;
    if (size > 0 && size === last) return copyFileSync(`${cwd}/${file}`, to);
    last = size;
  }
}

const pki = await benchPki(agents);
const coordinator = await startCoordinator({ pki, ...(process.env.PROF ? { profileDir: process.env.PROF } : {}) });
const fleet = new Fleet({ pki, address: coordinator.address, mode: "complete", concurrency: Number(process.env.CONC ?? 64) });
try {
  const step = await fleet.add(agents, 120_000);
  process.stdout.write(`${step.connected} agents connected in ${step.seconds.toFixed(1)} s\n`);
  const before = threadCpuMs(coordinator.pid);
  await sleep(idleMs);
  let total = 0;
  for (const [thread, ms] of threadCpuMs(coordinator.pid)) {
    const spent = ms - (before.get(thread) ?? 0);
    total += spent;
    if (spent > 0) process.stdout.write(`  thread ${thread.padEnd(24)} ${((100 * spent) / idleMs).toFixed(1)} % of a core\n`);
  }
  process.stdout.write(`idle coordinator: ${((100 * total) / idleMs).toFixed(1)} % of a core, ${fleet.lost.length} sessions lost\n`);
  for (const line of fleet.lostSummary()) process.stdout.write(`  lost: ${line}\n`);
  if (process.env.BENCH_HEAP_SNAPSHOT) await heapSnapshot(coordinator.pid, process.env.BENCH_HEAP_SNAPSHOT);
  const wanted = /^(process_resident_memory_bytes|nodejs_heap_size_(used|total)_bytes|nodejs_external_memory_bytes) /;
  for (const line of (await coordinator.metrics()).split("\n")) if (wanted.test(line)) process.stdout.write(`  ${line}\n`);
} finally {
  await fleet.stop();
  await coordinator.stop();
}
