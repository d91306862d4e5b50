// scale: agents connect in steps of 1,000, 5,000 and 10,000; at each step the coordinator's
// RSS and CPU while idle (heartbeats only), and how fast they connected. Every step is
// bounded in time: what was reached is reported.
import { Fleet } from "../lib/agents.js";
import { startCoordinator } from "../lib/coordinator.js";
import { FigureSet, type ScenarioResult } from "../lib/results.js";
import { summarizeProfiles } from "../lib/profile.js";
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
    const allLevels = ctx.smoke ? [20, 40] : [1000, 5000, 10_000];
    const idleMs = ctx.smoke ? 2000 : 10_000;
    for (let run = 0; run < ctx.runs; run++) {
      // The first run climbs every step; later runs only the first, for the median of its
      // connect time: at ~60 agents/s, 10,000 take minutes, and three climbs would make
      // this one scenario a quarter of an hour. Connecting is bounded per run.
      const levels = run === 0 ? allLevels : allLevels.slice(0, 1);
      const connectBudgetMs = ctx.smoke ? 60_000 : run === 0 ? 330_000 : 50_000;
      ctx.log(`scale: run ${run + 1} of ${ctx.runs}${levels.length < allLevels.length ? ` (the ${allLevels[0]!.toLocaleString("en-US")} step only)` : ""}`);
      const coordinator = await startCoordinator({ pki: ctx.pki, ...(run === 0 && ctx.profileDir ? { profileDir: ctx.profileDir } : {}) });
      const fleet = new Fleet({ pki: ctx.pki, address: coordinator.address, mode: "complete" });
      try {
        const baseline = readUsage(coordinator.pid)?.rssBytes ?? 0;
        const runStart = performance.now();
        const measured = new Set<number>();
        for (const level of levels) {
          const left = connectBudgetMs - (performance.now() - runStart);
          if (left <= 0) break;
          const before = fleet.connected;
          const agentCpuMs = () => fleet.pids.reduce((sum, pid) => sum + (readUsage(pid)?.cpuMs ?? 0), 0);
          // Both from when the agents start connecting: a new agent process's own start (node,
          // the loader, the SDK's code: 1-1.3 s of CPU each) is not connecting. Until session
          // twelve it was counted, and the agents' share came out over what two cores hold.
          let connectingCoordinator = startWindow([coordinator.pid]);
          let agentCpuBefore = agentCpuMs();
          const step = await fleet.add(level - fleet.size, left, () => {
            connectingCoordinator = startWindow([coordinator.pid]);
            agentCpuBefore = agentCpuMs();
          });
          const cpuWhileConnecting = { coordinator: connectingCoordinator.end().cpuPct, agents: (agentCpuMs() - agentCpuBefore) / 10 / step.seconds };
          const reached = step.connected;
          const tag = level.toLocaleString("en-US");
          const short = reached < level;
          const note = short ? `reached ${reached.toLocaleString("en-US")} of ${tag} agents in ${((performance.now() - runStart) / 1000).toFixed(0)} s` : undefined;
          const at = (more: object = {}) => ({ ...(note ? { note } : {}), ...more });
          if (level === levels[0]) {
            figures.add(`scale.connect_${level}_s`, `${tag} agents connect in`, "s", short ? Number.NaN : step.seconds, at({ target: { op: "<", value: 5 } }));
          }
          figures.add(`scale.${level}.connect_rate`, `connect rate, step to ${tag}`, "agents/s", (reached - before) / step.seconds, at());
          figures.add(`scale.${level}.connect_cpu_coordinator`, `coordinator CPU while connecting to ${tag}`, "% of a core", cpuWhileConnecting.coordinator, at());
          figures.add(`scale.${level}.connect_cpu_agents`, `agent processes' CPU while connecting to ${tag}`, "% of a core", cpuWhileConnecting.agents, at());
          // Idle: only heartbeats flow; the last step idles twice as long.
          measured.add(level);
          const lostBefore = fleet.lost.length;
          const window = startWindow([coordinator.pid]);
          await new Promise((r) => setTimeout(r, level === allLevels.at(-1) || short ? 2 * idleMs : idleMs));
          const u = window.end();
          const big = level === allLevels.at(-1);
          figures.add(`scale.${level}.rss_mib`, `coordinator RSS, step ${tag} agents`, "MiB", u.rssMiB, at(big ? { target: { op: "<", value: 572 } } : {}));
          figures.add(`scale.${level}.rss_per_agent_kib`, `coordinator RSS per agent, step ${tag}`, "KiB", ((u.rssMiB * 2 ** 20 - baseline) / 1024) / Math.max(1, reached), at());
          figures.add(`scale.${level}.idle_cpu_pct`, `coordinator idle CPU, step ${tag}`, "% of a core", u.cpuPct, at(big ? { target: { op: "<", value: 10 } } : {}));
          figures.add(`scale.${level}.sessions_lost`, `sessions lost while idle, step ${tag}`, "sessions", fleet.lost.length - lostBefore, at({ target: { op: "<=", value: 0 } }));
          if (fleet.lost.length > lostBefore) notes.push(`scale run ${run + 1}, step ${tag}: sessions lost so far (the agents' view): ${fleet.lostSummary().join("; ")}`);
          if (short) {
            notes.push(`scale run ${run + 1}: ${note}; higher steps skipped`);
            break;
          }
        }
        // Steps not reached still show their targets, as not measured.
        const top = allLevels.at(-1)!;
        if (run === 0 && !measured.has(top)) {
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
    if (ctx.profileDir) notes.push(...summarizeProfiles(ctx.profileDir, 15, ctx.log));
    return { scenario: "scale", figures: figures.list(), notes };
  },
};
