// throughput: 100 agents, a window of 512 unary SubmitTask calls in flight, tasks/s
// succeeded; and the same with bulk submission once Control has a method for it.
import { withBaton, type Baton } from "../lib/baton.js";
import { bulkMethod, submitAll, submitBulk, succeededTasks, warmupTopics, type BulkMethod, type Submitted } from "../lib/control.js";
import { summarizeProfiles } from "../lib/profile.js";
import { FigureSet, percentile, type ScenarioResult } from "../lib/results.js";
import type { BenchContext, Scenario } from "../lib/scenario.js";

const WINDOW = 512;
const BULK_BATCH = 1000;
const BULK_WINDOW = 4;

type Submitter = (b: Baton, ids: string[], deadline: number) => Promise<Submitted>;

const unary: Submitter = (b, ids, deadline) => submitAll(b.driver.control, ids, WINDOW, deadline);
const bulk = (found: BulkMethod): Submitter => (b, ids, deadline) => submitBulk(b.driver.control, found, ids, BULK_BATCH, BULK_WINDOW, deadline);

async function measure(ctx: BenchContext, figures: FigureSet, how: "unary" | "bulk", submit: Submitter, run: number): Promise<void> {
  const agents = ctx.smoke ? 10 : 100;
  const runMs = ctx.smoke ? 2000 : 10_000;
  // --profile takes the first unary run; BENCH_PROFILE_BULK=1, the first bulk run instead.
  const profile = run === 0 && how === (process.env.BENCH_PROFILE_BULK ? "bulk" : "unary");
  // No watch on every task: thousands of events a second overrun a watcher, and its resumes
  // would load the coordinator being measured. Completions are counted by the agents.
  // Every task's times are read back from ListTasks afterwards, so every ended task is kept
  // (tasks.keepEnded, 10,000 by default, would forget most of a bulk run's 80,000).
  const config = { tasks: { keepEnded: 1_000_000 } };
  await withBaton(ctx, { agents, mode: "complete", topics: warmupTopics("succeeded"), connectTimeoutMs: 60_000, warmup: "succeeded", profile, config }, async (b) => {
    const ids = Array.from({ length: ctx.smoke ? 2000 : 200_000 }, (_, i) => `tp-${how}-${run}-${i}`);
    const usage = b.measure();
    const t0 = performance.now();
    const base = (await b.fleet.stats()).completed;
    const sub = await submit(b, ids, Date.now() + runMs);
    const submitSeconds = (performance.now() - t0) / 1000;
    // Then the backlog drains, for as long again at most: tasks/s is over the whole time.
    const all = await b.fleet.whenCompleted(base + sub.submitted, Date.now() + runMs);
    const end = Date.now();
    const seconds = (performance.now() - t0) / 1000;
    usage.finish(figures, `throughput.${how}`, `, ${how}`);
    // Counted from the coordinator's own record, so events missed in a burst cannot skew them.
    const done = (await succeededTasks(b.driver.control, `tp-${how}-${run}-`)).filter((t) => t.updatedMs <= end);
    const succeeded = done.length;
    const latencies = done.map((t) => t.updatedMs - t.createdMs).sort((a, c) => a - c);
    const label = how === "unary" ? `${WINDOW} unary submits in flight` : `bulk, ${BULK_WINDOW} calls of ${BULK_BATCH} in flight`;
    const target = how === "unary" ? { op: ">=" as const, value: 5000 } : undefined;
    figures.add(`throughput.${how}.tasks_per_s`, `tasks succeeded/s, ${agents} agents, ${label}`, "tasks/s", succeeded / seconds, { ...(target ? { target } : {}), note: `${succeeded} of ${sub.submitted} succeeded in ${seconds.toFixed(1)} s${all ? "" : " (bound hit)"}${sub.failed ? `; ${sub.failed} submits failed: ${sub.lastError}` : ""}` });
    figures.add(`throughput.${how}.submits_per_s`, `submits answered/s, ${how}`, "tasks/s", sub.submitted / submitSeconds);
    figures.add(`throughput.${how}.latency_p50_ms`, `created -> succeeded p50 under load (coordinator's times), ${how}`, "ms", percentile(latencies, 0.5));
    figures.add(`throughput.${how}.latency_p99_ms`, `created -> succeeded p99 under load (coordinator's times), ${how}`, "ms", percentile(latencies, 0.99));
  });
}

/** The throughput scenario. */
export const throughput: Scenario = {
  name: "throughput",
  description: `100 agents: ${WINDOW} unary submits in flight, and bulk submission (when Control has it); with --profile a coordinator CPU profile`,
  agents: (smoke) => (smoke ? 10 : 100),
  async run(ctx): Promise<ScenarioResult> {
    const figures = new FigureSet();
    const notes: string[] = [];
    for (let run = 0; run < ctx.runs; run++) {
      ctx.log(`throughput: unary, run ${run + 1} of ${ctx.runs}`);
      await measure(ctx, figures, "unary", unary, run);
    }
    const found = bulkMethod();
    if (!found) figures.text("throughput.bulk.tasks_per_s", "tasks succeeded/s, bulk submission", "n/a: no bulk submission");
    else {
      for (let run = 0; run < ctx.runs; run++) {
        ctx.log(`throughput: bulk (Control.${found.method.name}), run ${run + 1} of ${ctx.runs}`);
        await measure(ctx, figures, "bulk", bulk(found), run);
      }
    }
    if (ctx.profileDir) notes.push(...summarizeProfiles(ctx.profileDir, 15, ctx.log));
    return { scenario: "throughput", figures: figures.list(), notes };
  },
};
