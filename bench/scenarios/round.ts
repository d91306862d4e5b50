// round: 10,000 tasks submitted at once over 1,000 agents, from the first submit until
// every directive is acked (counted by the agents as they ack), submitted with unary calls
// and again in bulk; and the planner's share of it, timed as bench/planner.ts does on a
// plan of the same size.
import { planInput, timePlanner } from "../planner.js";
import { withBaton } from "../lib/baton.js";
import { summarizeProfiles } from "../lib/profile.js";
import { bulkMethod, submitAll, submitBulk, warmupTopics } from "../lib/control.js";
import { FigureSet, type ScenarioResult } from "../lib/results.js";
import type { Scenario } from "../lib/scenario.js";

const BULK_BATCH = 1000;
const BULK_WINDOW = 4;

/** The round scenario. */
export const round: Scenario = {
  name: "round",
  description: "10,000 tasks over 1,000 agents: submit (unary, and bulk) -> every directive acked; the planner's share",
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
      const found = bulkMethod();
      // Unary: 512 SubmitTask calls in flight. Bulk: SubmitTasks, 4 calls of 1,000 in flight,
      // how a pipeline that has 10,000 tasks at once submits them.
      const ways = [
        { how: "unary", label: "512 unary submits in flight", submit: (ids: string[], deadline: number) => submitAll(b.driver.control, ids, 512, deadline) },
        ...(found ? [{ how: "bulk", label: `bulk, ${BULK_WINDOW} calls of ${BULK_BATCH} in flight`, submit: (ids: string[], deadline: number) => submitBulk(b.driver.control, found, ids, BULK_BATCH, BULK_WINDOW, deadline) }] : []),
      ];
      runs: for (let run = 0; run < ctx.runs; run++) {
        for (const way of ways) {
          ctx.log(`round: ${way.how}, run ${run + 1} of ${ctx.runs}`);
          const key = way.how === "unary" ? "round" : `round.${way.how}`;
          const ids = Array.from({ length: tasks }, (_, i) => `round-${way.how}-${run}-${i}`);
          // Acks are counted where they are sent: 10,000 tasks' events would outrun a watcher's queue and the retained log.
          const acceptedBefore = b.fleet.accepted;
          const usage = b.measure();
          const t0 = performance.now();
          const deadline = Date.now() + boundMs;
          const sub = await way.submit(ids, deadline);
          const submitSeconds = (performance.now() - t0) / 1000;
          const all = await b.fleet.whenAccepted(acceptedBefore + tasks, deadline);
          const seconds = (performance.now() - t0) / 1000;
          usage.finish(figures, key, way.how === "unary" ? "" : `, ${way.how}`);
          const acked = b.fleet.accepted - acceptedBefore;
          const note = all ? `${tasks} tasks over ${n} agents, ${way.label}` : `bound hit: ${acked} of ${tasks} acked in ${seconds.toFixed(0)} s (${sub.submitted} submitted)`;
          figures.add(`${key}.seconds`, `submit -> all ${tasks.toLocaleString("en-US")} acked, ${n} agents, ${way.how}`, "s", all ? seconds : Number.NaN, { target: { op: "<", value: 1 }, note });
          figures.add(`${key}.acked_per_s`, `directives acked/s over the round, ${way.how}`, "tasks/s", acked / seconds);
          figures.add(`${key}.submit_seconds`, `submitting ${tasks.toLocaleString("en-US")} (${way.label})`, "s", submitSeconds, sub.failed ? { note: `${sub.failed} failed: ${sub.lastError}` } : {});
          if (way.how === "unary") {
            figures.add("round.planner_ms", `planner, ${tasks.toLocaleString("en-US")} tasks x ${agents.toLocaleString("en-US")} agents (bench/planner.ts input)`, "ms", planner.medianMs, { target: { op: "<", value: 100 } });
          }
          figures.add(`${key}.planner_share_pct`, `planner's share of the round, ${way.how}`, "%", (100 * planner.medianMs) / 1000 / seconds, all ? {} : { note: "of the time until the bound" });
          // Free the agents' slots before the next round: every held directive completes, durably.
          b.fleet.release();
          if (!all) {
            notes.push(`round: a ${way.how} run hit its ${boundMs / 1000} s bound; later runs skipped`);
            break runs;
          }
          if (!(await b.fleet.whenSettled(boundMs))) {
            notes.push(`round: completions of the ${way.how} run ${run + 1} were not all acknowledged within ${boundMs / 1000} s; later runs skipped`);
            break runs;
          }
        }
      }
    });
    if (ctx.profileDir) notes.push(...summarizeProfiles(ctx.profileDir, 15, ctx.log));
    return { scenario: "round", figures: figures.list(), notes };
  },
};
