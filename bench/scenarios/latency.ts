// latency: one task at a time, SubmitTask -> its "succeeded" event (WatchEvents), with 1 and
// with 1,000 agents connected; and dispatch -> ack inside the coordinator, from a histogram
// on its /metrics when it has one.
import { withBaton } from "../lib/baton.js";
import { summarizeProfiles } from "../lib/profile.js";
import { benchTask, submitAll } from "../lib/control.js";
import { findHistogram, quantileBetween, type Buckets } from "../lib/prometheus.js";
import { FigureSet, percentile, type ScenarioResult } from "../lib/results.js";
import type { BenchContext, Scenario } from "../lib/scenario.js";

// A dispatch -> ack histogram, whatever the rebuilt coordinator names it.
const ACK_HISTOGRAM = /(dispatch|directive).*ack.*(seconds|latency|duration|time)|ack_(latency|seconds)/;
// Tasks pushed through under load (256 in flight) between the cold runs and the warm ones.
const WARM_TASKS = 10_000;

async function level(ctx: BenchContext, figures: FigureSet, notes: string[], agents: number, profile = false): Promise<void> {
  const maxTasks = ctx.smoke ? 20 : 2000;
  const runMs = ctx.smoke ? 2000 : 8000;
  await withBaton(ctx, { agents, mode: "complete", topics: ["task.*.succeeded", "task.*.dead_lettered"], connectTimeoutMs: ctx.smoke ? 60_000 : 45_000, warmup: "succeeded", profile }, async (b) => {
    const n = b.connect.connected;
    const tag = `${agents === 1 ? "1 agent" : `${agents.toLocaleString("en-US")} agents`}`;
    const note = n < agents ? `reached ${n} of ${agents} agents in ${b.connect.seconds.toFixed(0)} s` : undefined;
    const target = (value: number) => ({ target: { op: "<=" as const, value }, ...(note ? { note } : {}) });
    // One set of runs on the coordinator as it comes (started for this level, warmed by one
    // task), as since session one; then, once a burst of tasks under load has made its task
    // path hot (TurboFan), the same runs again: what a coordinator that has been serving for
    // a while answers (session ten: the cold runs are spent mostly in unoptimised code).
    const measure = async (phase: "" | "warm_", runs: number) => {
      for (let run = 0; run < runs; run++) {
        const before = findHistogram(await b.coordinator.metrics(), ACK_HISTOGRAM);
        const usage = b.measure();
        const latencies: number[] = [];
        const t0 = performance.now();
        let lost = 0;
        for (let i = 0; i < maxTasks && performance.now() - t0 < runMs; i++) {
          const id = `lat-${phase}${agents}-${run}-${i}`;
          const start = performance.now();
          await b.driver.control.submitTask({ task: benchTask(id) });
          const end = await b.driver.watch.whenAny(id, ["succeeded", "dead_lettered"], 60_000);
          if (end.state === "succeeded") latencies.push(end.at - start);
          else lost++;
        }
        const seconds = (performance.now() - t0) / 1000;
        latencies.sort((a, c) => a - c);
        const key = `latency.${phase}${agents}`;
        const what = `${tag}${phase ? `, warm (after ${WARM_TASKS.toLocaleString("en-US")} tasks under load)` : ""}`;
        figures.add(`${key}.p50_ms`, `submit -> succeeded p50, ${what}`, "ms", percentile(latencies, 0.5), target(2));
        figures.add(`${key}.p99_ms`, `submit -> succeeded p99, ${what}`, "ms", percentile(latencies, 0.99), target(10));
        figures.add(`${key}.p999_ms`, `submit -> succeeded p99.9, ${what}`, "ms", percentile(latencies, 0.999), note ? { note } : {});
        figures.add(`${key}.tasks_per_s`, `tasks/s one at a time, ${what}`, "tasks/s", latencies.length / seconds, { note: `${latencies.length} tasks a run${lost ? `, ${lost} dead-lettered` : ""}` });
        if (!phase) usage.finish(figures, key, `, ${tag}`);
        const after = findHistogram(await b.coordinator.metrics(), ACK_HISTOGRAM);
        if (after) {
          const p50 = quantileBetween(before?.buckets as Buckets | undefined, after.buckets, 0.5) * 1e6;
          figures.add(`${key}.dispatch_ack_p50_us`, `dispatch -> ack p50 (coordinator), ${what}`, "us", p50, { target: { op: "<=", value: 200 }, note: `from ${after.name}` });
        }
      }
    };
    await measure("", ctx.runs);
    if (!ctx.smoke) {
      const base = (await b.fleet.stats()).completed;
      const ids = Array.from({ length: WARM_TASKS }, (_, i) => `lat-heat-${agents}-${i}`);
      const sub = await submitAll(b.driver.control, ids, 256, Date.now() + 60_000);
      if (!(await b.fleet.whenCompleted(base + sub.submitted, Date.now() + 60_000))) notes.push(`latency, ${tag}: the warming burst did not complete within 60 s`);
      await measure("warm_", ctx.runs);
    }
    if (!findHistogram(await b.coordinator.metrics(), ACK_HISTOGRAM)) {
      figures.text(`latency.${agents}.dispatch_ack_p50_us`, `dispatch -> ack p50 (coordinator), ${tag}`, "n/a (no metric yet)", { op: "<=", value: 200 }, "us");
    }
    if (note) notes.push(`latency, ${tag}: ${note}`);
  });
}

/** The latency scenario. */
export const latency: Scenario = {
  name: "latency",
  description: "one task at a time with 1 and with 1,000 agents connected: submit -> succeeded p50/p99/p99.9, dispatch -> ack",
  agents: (smoke) => (smoke ? 5 : 1000),
  async run(ctx): Promise<ScenarioResult> {
    const figures = new FigureSet();
    const notes: string[] = [];
    const many = ctx.smoke ? 5 : 1000;
    ctx.log("latency: 1 agent");
    // --profile profiles the coordinator that serves 1 agent.
    await level(ctx, figures, notes, 1, true);
    ctx.log(`latency: ${many} agents`);
    await level(ctx, figures, notes, many);
    // "Within 1.25x of each other": many agents against one, run by run.
    for (const phase of ["", "warm_"]) {
      for (const q of ["p50", "p99"] as const) {
        const one = figures.get(`latency.${phase}1.${q}_ms`)?.samples ?? [];
        const lots = figures.get(`latency.${phase}${many}.${q}_ms`)?.samples ?? [];
        for (let i = 0; i < Math.min(one.length, lots.length); i++) {
          figures.add(`latency.${phase}ratio.${q}`, `${q}: ${many} agents / 1 agent${phase ? ", warm" : ""}`, "x", lots[i]! / one[i]!, { target: { op: "<=", value: 1.25 } });
        }
      }
    }
    if (ctx.profileDir) notes.push(...summarizeProfiles(ctx.profileDir, 15, ctx.log));
    return { scenario: "latency", figures: figures.list(), notes };
  },
};
