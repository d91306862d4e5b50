// scale: agents connect in steps of 1,000, 5,000 and 10,000; at each step the coordinator's
// RSS and CPU while idle (heartbeats only), and how fast they connected. Every step is
// bounded in time: what was reached is reported.
import { Fleet } from "../lib/agents.js";
import { startCoordinator } from "../lib/coordinator.js";
import { FigureSet, type ScenarioResult } from "../lib/results.js";
import type { Scenario } from "../lib/scenario.js";
import { readUsage, startWindow } from "../lib/usage.js";

/** The scale scenario. */
export const scale: Scenario = {
  name: "scale",
  description: "coordinator RSS and idle CPU with 1,000, 5,000 and 10,000 connected agents; how fast they connect; heartbeats kept",
  agents: (smoke) => (smoke ? 40 : 10_000),
  async run(ctx): Promise<ScenarioResult> {
    const figures = new FigureSet();
    const notes: string[] = [];
    const levels = ctx.smoke ? [20, 40] : [1000, 5000, 10_000];
    // Connecting is bounded per run, so a slow coordinator costs minutes, not an hour.
    const connectBudgetMs = ctx.smoke ? 60_000 : 50_000;
    const idleMs = ctx.smoke ? 2000 : 10_000;
    for (let run = 0; run < ctx.runs; run++) {
      ctx.log(`scale: run ${run + 1} of ${ctx.runs}`);
      const coordinator = await startCoordinator({ pki: ctx.pki });
      const fleet = new Fleet({ pki: ctx.pki, address: coordinator.address, mode: "complete" });
      try {
        const baseline = readUsage(coordinator.pid)?.rssBytes ?? 0;
        const runStart = performance.now();
        const measured = new Set<number>();
        for (const level of levels) {
          const left = connectBudgetMs - (performance.now() - runStart);
          if (left <= 0) break;
          const before = fleet.connected;
          const step = await fleet.add(level - fleet.size, left);
          const reached = step.connected;
          const tag = level.toLocaleString("en-US");
          const short = reached < level;
          const note = short ? `reached ${reached.toLocaleString("en-US")} of ${tag} agents in ${((performance.now() - runStart) / 1000).toFixed(0)} s` : undefined;
          const at = (more: object = {}) => ({ ...(note ? { note } : {}), ...more });
          if (level === levels[0]) {
            figures.add(`scale.connect_${level}_s`, `${tag} agents connect in`, "s", short ? Number.NaN : step.seconds, at({ target: { op: "<", value: 5 } }));
          }
          figures.add(`scale.${level}.connect_rate`, `connect rate, step to ${tag}`, "agents/s", (reached - before) / step.seconds, at());
          // Idle: only heartbeats flow; the last step idles twice as long.
          measured.add(level);
          const lostBefore = fleet.lost.length;
          const window = startWindow([coordinator.pid]);
          await new Promise((r) => setTimeout(r, level === levels.at(-1) || short ? 2 * idleMs : idleMs));
          const u = window.end();
          const big = level === levels.at(-1);
          figures.add(`scale.${level}.rss_mib`, `coordinator RSS, step ${tag} agents`, "MiB", u.rssMiB, at(big ? { target: { op: "<", value: 572 } } : {}));
          figures.add(`scale.${level}.rss_per_agent_kib`, `coordinator RSS per agent, step ${tag}`, "KiB", ((u.rssMiB * 2 ** 20 - baseline) / 1024) / Math.max(1, reached), at());
          figures.add(`scale.${level}.idle_cpu_pct`, `coordinator idle CPU, step ${tag}`, "% of a core", u.cpuPct, at(big ? { target: { op: "<", value: 10 } } : {}));
          figures.add(`scale.${level}.sessions_lost`, `sessions lost while idle, step ${tag}`, "sessions", fleet.lost.length - lostBefore, at({ target: { op: "<=", value: 0 } }));
          if (short) {
            notes.push(`scale run ${run + 1}: ${note}; higher steps skipped`);
            break;
          }
        }
        // Steps not reached still show their targets, as not measured.
        const top = levels.at(-1)!;
        if (!measured.has(top)) {
          const note = `step not reached (${fleet.connected.toLocaleString("en-US")} agents connected)`;
          figures.add(`scale.${top}.rss_mib`, `coordinator RSS, step ${top.toLocaleString("en-US")} agents`, "MiB", Number.NaN, { target: { op: "<", value: 572 }, note });
          figures.add(`scale.${top}.idle_cpu_pct`, `coordinator idle CPU, step ${top.toLocaleString("en-US")}`, "% of a core", Number.NaN, { target: { op: "<", value: 10 }, note });
        }
        const agentWindow = startWindow(fleet.pids).end();
        figures.add("scale.agent_processes_rss_mib", `agent processes (${fleet.pids.length}): RSS at the end`, "MiB", agentWindow.rssMiB);
      } finally {
        await fleet.stop();
        await coordinator.stop();
      }
    }
    return { scenario: "scale", figures: figures.list(), notes };
  },
};
