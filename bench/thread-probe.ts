// Where the coordinator's CPU goes, thread by thread, one task at a time (or a few in flight),
// and how it falls as the JIT warms up: one agent, tasks in chunks, for each chunk the main
// thread's CPU per task and the chunk's submit -> succeeded p50, then every thread's CPU per
// task over the whole run (/proc/<pid>/task/<tid>/stat: the main thread, V8's worker threads,
// which compile and mark, and the journal's SQLite thread). `--perf FILE` also records the
// coordinator with `perf record -g` while the tasks run, for `perf report -i FILE`.
//   node --import tsx bench/thread-probe.ts [--tasks 6000] [--chunk 500] [--concurrency 1] [--perf FILE]
// Node flags for the coordinator (--trace-opt, --cpu-prof ...) go in BENCH_NODE_FLAGS.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readlinkSync } from "node:fs";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { Fleet } from "./lib/agents.js";
import { benchTask, openDriver, warmUp } from "./lib/control.js";
import { startCoordinator } from "./lib/coordinator.js";
import { benchPki } from "./lib/pki.js";
import { percentile } from "./lib/results.js";
import { threadCpuMs } from "./lib/usage.js";

const { values } = parseArgs({
  options: {
    tasks: { type: "string", default: "6000" },
    chunk: { type: "string", default: "500" },
    concurrency: { type: "string", default: "1" },
    perf: { type: "string" },
    level: { type: "string", default: "info" },
  },
});
const tasks = Number(values.tasks);
const chunk = Number(values.chunk);
const concurrency = Number(values.concurrency);
for (const [flag, n] of [["--tasks", tasks], ["--chunk", chunk], ["--concurrency", concurrency]] as const) {
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a whole number of at least 1, got ${JSON.stringify(values[flag.slice(2) as "tasks"])}`);
}

// perf would move an existing file aside to FILE.old without a word.
if (values.perf && existsSync(values.perf)) throw new Error(`--perf: ${values.perf} exists already; name a new file`);

const pki = await benchPki(1);
const coordinator = await startCoordinator({ pki, config: { log: { level: values.level } } });
const fleet = new Fleet({ pki, address: coordinator.address, mode: "complete" });
const driver = openDriver(pki, coordinator.address, ["task.*.succeeded"]);
// The main thread's tid is the process's pid, whatever the thread is named.
const mainThreadMs = (threads: Map<string, number>) => [...threads].find(([key]) => key.startsWith(`${coordinator.pid} `))?.[1] ?? 0;

/** Whether `pid` holds perf event descriptors: perf has attached (its output file is made before that, and stays when attaching fails). */
function hasPerfEvents(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === "anon_inode:[perf_event]";
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/** `perf record` attached to the coordinator: resolves once perf has opened its events on it. */
async function startPerf(file: string): Promise<ChildProcess> {
  const perf = spawn("perf", ["record", "-F", "2000", "-g", "-s", "-o", file, "-p", String(coordinator.pid)], { stdio: ["ignore", "ignore", "inherit"] });
  const failed = new Promise<never>((_, reject) => {
    perf.once("error", (err) => reject(new Error(`--perf: could not run perf (${err.message}); on Debian: apt-get install linux-perf`)));
    perf.once("exit", (code, signal) => reject(new Error(`--perf: perf record exited (${signal ?? `code ${code}`}) before it attached; its message is above`)));
  });
  failed.catch(() => {});
  const deadline = performance.now() + 30_000;
  while (perf.pid === undefined || !hasPerfEvents(perf.pid)) {
    if (performance.now() > deadline) {
      perf.kill("SIGKILL");
      throw new Error(`--perf: perf record did not attach to the coordinator within 30 s`);
    }
    await Promise.race([sleep(20), failed]);
  }
  return perf;
}
try {
  await fleet.add(1, 60_000);
  await warmUp(driver, "succeeded", 120_000);
  const perf = values.perf ? await startPerf(values.perf) : undefined;
  const start = threadCpuMs(coordinator.pid);
  let chunkStart = mainThreadMs(start);
  let chunkLatency: number[] = [];
  const all: number[] = [];
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < tasks) {
        const id = `probe-${next++}`;
        const begin = performance.now();
        await driver.control.submitTask({ task: benchTask(id) });
        await driver.watch.when(id, "succeeded", 60_000);
        const ms = performance.now() - begin;
        chunkLatency.push(ms);
        all.push(ms);
        if (++done % chunk === 0) {
          const main = mainThreadMs(threadCpuMs(coordinator.pid));
          chunkLatency.sort((a, b) => a - b);
          console.log(`tasks ${String(done - chunk + 1).padStart(5)}-${String(done).padEnd(5)}  main thread ${(((main - chunkStart) * 1000) / chunk).toFixed(0).padStart(5)} us/task  p50 ${percentile(chunkLatency, 0.5).toFixed(2)} ms`);
          chunkStart = main;
          chunkLatency = [];
        }
      }
    }),
  );
  const wall = performance.now() - t0;
  const end = threadCpuMs(coordinator.pid);
  if (perf) {
    if (perf.exitCode === null && perf.signalCode === null) {
      const exited = once(perf, "exit");
      perf.kill("SIGINT");
      await exited;
    } else console.log(`perf record exited while the tasks ran (${perf.signalCode ?? `code ${perf.exitCode}`}): ${values.perf} may be incomplete`);
  }
  all.sort((a, b) => a - b);
  console.log(`${tasks} tasks, ${concurrency} in flight, in ${(wall / 1000).toFixed(1)} s: p50 ${percentile(all, 0.5).toFixed(2)} ms, p99 ${percentile(all, 0.99).toFixed(2)} ms`);
  for (const [thread, ms] of end) {
    const used = ms - (start.get(thread) ?? 0);
    if (used > 0) console.log(`  ${thread.padEnd(24)} ${String(used).padStart(6)} ms CPU  ${((used * 1000) / tasks).toFixed(0).padStart(5)} us/task`);
  }
} finally {
  driver.close();
  await fleet.stop();
  await coordinator.stop();
}
