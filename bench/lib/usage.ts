// CPU time and memory of a process, read from /proc (Linux), so any process counts the same
// way: the coordinator, agent processes, a peer's server (RabbitMQ's beam.smp), the bench itself.
import { readdirSync, readFileSync } from "node:fs";
import type { FigureSet } from "./results.js";

/** One reading of a process. */
export interface UsageSample {
  pid: number;
  /** user + system CPU time so far, ms. */
  cpuMs: number;
  /** Resident set now, bytes. */
  rssBytes: number;
  /** Peak resident set since the process started, bytes. */
  peakRssBytes: number;
  /** When it was read (performance.now()). */
  at: number;
}

// Clock ticks per second of /proc/<pid>/stat; 100 on every Linux this runs on.
const TICKS = 100;

/** Reads /proc/<pid>; undefined when the process is gone. */
export function readUsage(pid: number): UsageSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpuMs = ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
    return { pid, cpuMs, rssBytes: kib("VmRSS"), peakRssBytes: kib("VmHWM"), at: performance.now() };
  } catch {
    return undefined;
  }
}

/** A window over several processes of one role (e.g. all agent processes): CPU used in it and memory at its end. */
export interface UsageWindow {
  /** Ends the window: CPU % of one core over it, summed over the processes; RSS summed. */
  end(): { cpuPct: number; cpuMs: number; rssMiB: number; peakRssMiB: number; processes: number; seconds: number };
}

/** Starts measuring `pids` now. */
export function startWindow(pids: readonly number[]): UsageWindow {
  const start = new Map(pids.map((pid) => [pid, readUsage(pid)]));
  const t0 = performance.now();
  return {
    end() {
      let cpuMs = 0;
      let rss = 0;
      let peak = 0;
      let processes = 0;
      for (const [pid, before] of start) {
        const now = readUsage(pid);
        if (!now || !before) continue;
        processes++;
        cpuMs += now.cpuMs - before.cpuMs;
        rss += now.rssBytes;
        peak += now.peakRssBytes;
      }
      const seconds = (performance.now() - t0) / 1000;
      return { cpuPct: seconds > 0 ? cpuMs / 10 / seconds : 0, cpuMs, rssMiB: rss / 2 ** 20, peakRssMiB: peak / 2 ** 20, processes, seconds };
    },
  };
}

/** Processes measured in a run, by role ("coordinator", "agent processes", "driver (bench)"). */
export type Roles = Record<string, readonly number[]>;

/** Measures every role over one run; `finish` adds CPU % (and CPU ms) and peak RSS per role to `figures`. */
export function measureRoles(roles: Roles): { finish(figures: FigureSet, prefix: string, labelSuffix?: string): void } {
  const windows = Object.entries(roles).map(([role, pids]) => [role, startWindow(pids)] as const);
  return {
    finish(figures, prefix, labelSuffix = "") {
      for (const [role, w] of windows) {
        const u = w.end();
        const who = u.processes > 1 ? `${role} (${u.processes})` : role;
        const key = `${prefix}.${role.replace(/\W+/g, "_")}`;
        figures.add(`${key}.cpu_pct`, `${who}: CPU${labelSuffix}`, "% of a core", u.cpuPct, { usage: true, note: `${Math.round(u.cpuMs)} ms CPU in ${u.seconds.toFixed(1)} s` });
        figures.add(`${key}.peak_rss_mib`, `${who}: peak RSS${labelSuffix}`, "MiB", u.peakRssMiB, { usage: true });
      }
    },
  };
}

/** CPU ms so far of each thread of `pid`, by "tid name" (/proc/<pid>/task/<tid>/stat). */
export function threadCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime, in clock ticks of 10 ms.
    out.set(`${tid} ${name}`, (Number(fields[11]) + Number(fields[12])) * 10);
  }
  return out;
}
