// ingest: 1,000 agents each running one task and reporting progress on it as fast as
// their streams take it (HTTP/2 flow control): updates/s accepted, sessions lost.
import { agentName } from "../lib/pki.js";
import { withBaton } from "../lib/baton.js";
import { summarizeProfiles } from "../lib/profile.js";
import { benchTask, submitAll, warmupTopics } from "../lib/control.js";
import { FigureSet, type ScenarioResult } from "../lib/results.js";
import type { Scenario } from "../lib/scenario.js";

/** The ingest scenario. */
export const ingest: Scenario = {
  name: "ingest",
  description: "1,000 agents reporting progress as fast as flow control allows: updates/s accepted, sessions lost",
  agents: (smoke) => (smoke ? 10 : 1000),
  async run(ctx): Promise<ScenarioResult> {
    const figures = new FigureSet();
    const notes: string[] = [];
    const agents = ctx.smoke ? 10 : 1000;
    const runMs = ctx.smoke ? 2000 : 8000;
    await withBaton(ctx, { agents, mode: "progress", topics: warmupTopics("running"), connectTimeoutMs: 45_000, warmup: "running", profile: true }, async (b) => {
      const n = b.connect.connected;
      // One task per connected agent, addressed to it, so every agent has a directive to report on.
      const ids = Array.from({ length: n }, (_, i) => `ingest-${i}`);
      const sub = await submitAll(b.driver.control, ids, 64, Date.now() + 60_000, (id, i) => benchTask(id, { target: { agentId: agentName(i) } }));
      // The warm-up's agent reports on two directives; every other agent on one.
      const all = await b.fleet.whenAccepted(sub.submitted + 1, Date.now() + (ctx.smoke ? 60_000 : 45_000));
      const running = Math.min(b.fleet.accepted - 1, n);
      const note = `${running} of ${agents} agents reporting${all ? "" : " (the rest had no directive within the bound)"}`;
      if (!all || n < agents) notes.push(`ingest: ${note}; ${n} of ${agents} connected in ${b.connect.seconds.toFixed(0)} s`);
      for (let run = 0; run < ctx.runs; run++) {
        const lostBefore = b.fleet.lost.length;
        const before = await b.fleet.stats();
        const usage = b.measure();
        const t0 = performance.now();
        await new Promise((r) => setTimeout(r, runMs));
        const after = await b.fleet.stats();
        const seconds = (performance.now() - t0) / 1000;
        usage.finish(figures, "ingest", `, ${running} agents reporting`);
        figures.add("ingest.updates_per_s", `progress updates/s accepted, ${running} agents`, "updates/s", (after.progressSent - before.progressSent) / seconds, { target: { op: ">=", value: 100_000 }, note });
        figures.add("ingest.sessions_lost", `sessions lost in ${runMs / 1000} s`, "sessions", b.fleet.lost.length - lostBefore, { target: { op: "<=", value: 0 } });
      }
      const lost = b.fleet.lostSummary();
      if (lost.length) notes.push(`ingest: sessions lost over the whole scenario (directives going out included): ${lost.join("; ")}`);
      b.fleet.release();
    });
    if (ctx.profileDir) notes.push(...summarizeProfiles(ctx.profileDir, 15, ctx.log));
    return { scenario: "ingest", figures: figures.list(), notes };
  },
};
