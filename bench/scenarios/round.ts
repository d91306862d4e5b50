// round: 10,000 tasks submitted at once over 1,000 agents, from the first submit until
// every directive is acked (counted by the agents as they ack); and the planner's share of it,
// timed as bench/planner.ts does on a plan of the same size.
import { planInput, timePlanner } from "../planner.js";
import { withBaton } from "../lib/baton.js";
import { summarizeProfiles } from "../lib/profile.js";
import { submitAll, warmupTopics } from "../lib/control.js";
import { FigureSet, type ScenarioResult } from "../lib/results.js";
import type { Scenario } from "../lib/scenario.js";

/** The round scenario. */
export const round: Scenario = {
  name: "round",
  description: "10,000 tasks over 1,000 agents: submit -> every directive acked; the planner's share",
  agents: (smoke) => (smoke ? 20 : 1000),
  async run(ctx): Promise<ScenarioResult> {
    const figures = new FigureSet();
    const notes: string[] = [];
    const agents = ctx.smoke ? 20 : 1000;
    const tasks = ctx.smoke ? 200 : 10_000;
    const boundMs = ctx.smoke ? 60_000 : 60_000;
    const planner = timePlanner(planInput(agents, tasks), ctx.smoke ? 1 : 5);
    await withBaton(ctx, { agents, mode: "hold", maxInFlight: 32, topics: warmupTopics("running"), connectTimeoutMs: 45_000, warmup: "running", profile: true }, async (b) => {
      const n = b.connect.connected;
      if (n < agents) notes.push(`round: ${n} of ${agents} agents connected in ${b.connect.seconds.toFixed(0)} s`);
      for (let run = 0; run < ctx.runs; run++) {
        ctx.log(`round: run ${run + 1} of ${ctx.runs}`);
        const ids = Array.from({ length: tasks }, (_, i) => `round-${run}-${i}`);
        // Acks are counted where they are sent: 10,000 tasks' events would outrun a watcher's queue and the retained log.
        const acceptedBefore = b.fleet.accepted;
        const usage = b.measure();
        const t0 = performance.now();
        const deadline = Date.now() + boundMs;
        const sub = await submitAll(b.driver.control, ids, 512, deadline);
        const submitSeconds = (performance.now() - t0) / 1000;
        const all = await b.fleet.whenAccepted(acceptedBefore + tasks, deadline);
        const seconds = (performance.now() - t0) / 1000;
        usage.finish(figures, "round", "");
        const acked = b.fleet.accepted - acceptedBefore;
        const note = all ? `${tasks} tasks over ${n} agents` : `bound hit: ${acked} of ${tasks} acked in ${seconds.toFixed(0)} s (${sub.submitted} submitted)`;
        figures.add("round.seconds", `submit -> all ${tasks.toLocaleString("en-US")} acked, ${n} agents`, "s", all ? seconds : Number.NaN, { target: { op: "<", value: 1 }, note });
        figures.add("round.acked_per_s", "directives acked/s over the round", "tasks/s", acked / seconds);
        figures.add("round.submit_seconds", `submitting ${tasks.toLocaleString("en-US")} (512 in flight)`, "s", submitSeconds, sub.failed ? { note: `${sub.failed} failed: ${sub.lastError}` } : {});
        figures.add("round.planner_ms", `planner, ${tasks.toLocaleString("en-US")} tasks x ${agents.toLocaleString("en-US")} agents (bench/planner.ts input)`, "ms", planner.medianMs, { target: { op: "<", value: 100 } });
        figures.add("round.planner_share_pct", "planner's share of the round", "%", (100 * planner.medianMs) / 1000 / seconds, all ? {} : { note: "of the time until the bound" });
        // Free the agents' slots before the next run: every held directive completes, durably.
        b.fleet.release();
        if (!all) {
          notes.push(`round: the first run hit its ${boundMs / 1000} s bound; later runs skipped`);
          break;
        }
        if (!(await b.fleet.whenSettled(boundMs))) {
          notes.push(`round: completions of run ${run + 1} were not all acknowledged within ${boundMs / 1000} s; later runs skipped`);
          break;
        }
      }
    });
    if (ctx.profileDir) notes.push(...summarizeProfiles(ctx.profileDir, 15, ctx.log));
    return { scenario: "round", figures: figures.list(), notes };
  },
};
