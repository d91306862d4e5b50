// latency: one task at a time, SubmitTask -> its "succeeded" event (WatchEvents), with 1 and
// with 1,000 agents connected; and dispatch -> ack inside the coordinator, from a histogram
// on its /metrics when it has one.
import { withBaton } from "../lib/baton.js";
import { summarizeProfiles } from "../lib/profile.js";
import { benchTask } from "../lib/control.js";
import { findHistogram, quantileBetween, type Buckets } from "../lib/prometheus.js";
import { FigureSet, percentile, type ScenarioResult } from "../lib/results.js";
import type { BenchContext, Scenario } from "../lib/scenario.js";

// A dispatch -> ack histogram, whatever the rebuilt coordinator names it.
const ACK_HISTOGRAM = /(dispatch|directive).*ack.*(seconds|latency|duration|time)|ack_(latency|seconds)/;

async function level(ctx: BenchContext, figures: FigureSet, notes: string[], agents: number, profile = false): Promise<void> {
  const maxTasks = ctx.smoke ? 20 : 2000;
  const runMs = ctx.smoke ? 2000 : 8000;
  await withBaton(ctx, { agents, mode: "complete", topics: ["task.*.succeeded", "task.*.dead_lettered"], connectTimeoutMs: ctx.smoke ? 60_000 : 45_000, warmup: "succeeded", profile }, async (b) => {
    const n = b.connect.connected;
    const tag = `${agents === 1 ? "1 agent" : `${agents.toLocaleString("en-US")} agents`}`;
    const note = n < agents ? `reached ${n} of ${agents} agents in ${b.connect.seconds.toFixed(0)} s` : undefined;
    const target = (value: number) => ({ target: { op: "<=" as const, value }, ...(note ? { note } : {}) });
    for (let run = 0; run < ctx.runs; run++) {
      const before = findHistogram(await b.coordinator.metrics(), ACK_HISTOGRAM);
      const usage = b.measure();
      const latencies: number[] = [];
      const t0 = performance.now();
      let lost = 0;
      for (let i = 0; i < maxTasks && performance.now() - t0 < runMs; i++) {
        const id = `lat-${agents}-${run}-${i}`;
        const start = performance.now();
        await b.driver.control.submitTask({ task: benchTask(id) });
        const end = await b.driver.watch.whenAny(id, ["succeeded", "dead_lettered"], 60_000);
        if (end.state === "succeeded") latencies.push(end.at - start);
        else lost++;
      }
      const seconds = (performance.now() - t0) / 1000;
      latencies.sort((a, c) => a - c);
      figures.add(`latency.${agents}.p50_ms`, `submit -> succeeded p50, ${tag}`, "ms", percentile(latencies, 0.5), target(2));
      figures.add(`latency.${agents}.p99_ms`, `submit -> succeeded p99, ${tag}`, "ms", percentile(latencies, 0.99), target(10));
      figures.add(`latency.${agents}.p999_ms`, `submit -> succeeded p99.9, ${tag}`, "ms", percentile(latencies, 0.999), note ? { note } : {});
      figures.add(`latency.${agents}.tasks_per_s`, `tasks/s one at a time, ${tag}`, "tasks/s", latencies.length / seconds, { note: `${latencies.length} tasks a run${lost ? `, ${lost} dead-lettered` : ""}` });
      usage.finish(figures, `latency.${agents}`, `, ${tag}`);
      const after = findHistogram(await b.coordinator.metrics(), ACK_HISTOGRAM);
      if (after) {
        const p50 = quantileBetween(before?.buckets as Buckets | undefined, after.buckets, 0.5) * 1e6;
        figures.add(`latency.${agents}.dispatch_ack_p50_us`, `dispatch -> ack p50 (coordinator), ${tag}`, "us", p50, { target: { op: "<=", value: 200 }, note: `from ${after.name}` });
      }
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
    for (const q of ["p50", "p99"] as const) {
      const one = figures.get(`latency.1.${q}_ms`)?.samples ?? [];
      const lots = figures.get(`latency.${many}.${q}_ms`)?.samples ?? [];
      for (let i = 0; i < Math.min(one.length, lots.length); i++) {
        figures.add(`latency.ratio.${q}`, `${q}: ${many} agents / 1 agent`, "x", lots[i]! / one[i]!, { target: { op: "<=", value: 1.25 } });
      }
    }
    if (ctx.profileDir) notes.push(...summarizeProfiles(ctx.profileDir, 15, ctx.log));
    return { scenario: "latency", figures: figures.list(), notes };
  },
};
