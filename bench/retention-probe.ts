// What a long run leaves behind: tasks pushed through 100 agents with bulk submission, and
// after every step the coordinator's tasks held, heap, RSS and journal size; once with
// the default retention (tasks.keepEnded 10,000, keepEndedMs 24 h) and once keeping every
// ended task (how baton ran before it had retention).
//   node --import tsx bench/retention-probe.ts [tasks=100000] [step=10000]
import { readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { Fleet } from "./lib/agents.js";
import { startCoordinator } from "./lib/coordinator.js";
import { bulkMethod, openDriver, submitBulk } from "./lib/control.js";
import { benchPki } from "./lib/pki.js";

const total = Number(process.argv[2] ?? 100_000);
const step = Number(process.argv[3] ?? 10_000);
if (!(Number.isInteger(total) && total > 0 && Number.isInteger(step) && step > 0)) throw new Error("usage: retention-probe.ts [tasks, a whole number >= 1] [step, the same]");
const found = bulkMethod();
if (!found) throw new Error("Control has no bulk submission method");
const pki = await benchPki(100);

// The sum of a metric's samples in Prometheus text ("baton_tasks{state=...}" lines), or one sample.
function metric(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

// Bytes of the SQLite journal's files (journal.sqlite and its WAL) in the coordinator's data folder.
function journalBytes(logFile: string): number {
  const data = join(dirname(logFile), "data");
  return readdirSync(data)
    .filter((f) => f.startsWith("journal.sqlite"))
    .reduce((sum, f) => sum + statSync(join(data, f)).size, 0);
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0).padStart(6);

for (const [label, config] of [
  ["default retention (tasks.keepEnded 10,000)", {}],
  ["every ended task kept (tasks.keepEnded 1,000,000,000)", { tasks: { keepEnded: 1_000_000_000 } }],
] as const) {
  const coordinator = await startCoordinator({ pki, config });
  const fleet = new Fleet({ pki, address: coordinator.address, mode: "complete" });
  const driver = openDriver(pki, coordinator.address, []);
  try {
    await fleet.add(100, 60_000);
    process.stdout.write(`\n${label}\n    tasks   held   heap used MiB   RSS MiB   journal MiB   tasks/s\n`);
    for (let done = 0; done < total; ) {
      const n = Math.min(step, total - done);
      const ids = Array.from({ length: n }, (_, i) => `keep-${done + i}`);
      const t0 = performance.now();
      const sub = await submitBulk(driver.control, found, ids, 1000, 4, Date.now() + 300_000);
      if (sub.failed > 0) throw new Error(`${sub.failed} submits failed: ${sub.lastError}`);
      done += n;
      if (!(await fleet.whenCompleted(done, Date.now() + 300_000))) throw new Error(`not every task completed within 300 s (${done} submitted)`);
      const seconds = (performance.now() - t0) / 1000;
      const text = await coordinator.metrics();
      const row = [String(done).padStart(9), String(metric(text, "baton_tasks")).padStart(6), mib(metric(text, "nodejs_heap_size_used_bytes")).padStart(15), mib(metric(text, "process_resident_memory_bytes")).padStart(9), mib(journalBytes(coordinator.logFile)).padStart(13), (n / seconds).toFixed(0).padStart(9)];
      process.stdout.write(`${row.join(" ")}\n`);
    }
  } finally {
    driver.close();
    await fleet.stop();
    await coordinator.stop();
  }
}
