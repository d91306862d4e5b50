// Where the coordinator's CPU goes, thread by thread, one task at a time (or a few in flight),
// and how it falls as the JIT warms up: one agent, tasks in chunks, for each chunk the main
// thread's CPU per task and the chunk's submit -> succeeded p50, then every thread's CPU per
// task over the whole run (/proc/<pid>/task/<tid>/stat: the main thread, V8's worker threads,
// which compile and mark, and the journal's SQLite thread). `--perf FILE` also records the
// coordinator with `perf record -g` while the tasks run, for `perf report -i FILE`.
//   node --import tsx bench/thread-probe.ts [--tasks 6000] [--chunk 500] [--concurrency 1] [--perf FILE]
// Node flags for the coordinator (--trace-opt, --cpu-prof ...) go in BENCH_NODE_FLAGS.
import { spawn } from "node:child_process";
import { once } from "node:events";
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

const pki = await benchPki(1);
const coordinator = await startCoordinator({ pki, config: { log: { level: values.level } } });
const fleet = new Fleet({ pki, address: coordinator.address, mode: "complete" });
const driver = openDriver(pki, coordinator.address, ["task.*.succeeded"]);
const mainThread = `${coordinator.pid} node`;
try {
  await fleet.add(1, 60_000);
  await warmUp(driver, "succeeded", 120_000);
  const perf = values.perf ? spawn("perf", ["record", "-F", "2000", "-g", "-s", "-o", values.perf, "-p", String(coordinator.pid)], { stdio: "ignore" }) : undefined;
  const start = threadCpuMs(coordinator.pid);
  let chunkStart = start.get(mainThread) ?? 0;
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
          const main = threadCpuMs(coordinator.pid).get(mainThread) ?? 0;
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
    perf.kill("SIGINT");
    await once(perf, "exit");
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
