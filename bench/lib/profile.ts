// Self time by function from the V8 CPU profiles that `node --cpu-prof` writes.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { ROOT } from "../../test/helpers/process.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** One function's self time. */
export interface SelfTime {
  name: string;
  where: string;
  ms: number;
  /** Share of the busy (non-idle) time, %. */
  pct: number;
}

// Not the process's own work: time it waited, or spent in the profiler.
const IDLE = new Set(["(idle)", "(program)"]);

/** The top `n` functions by self time of one profile, and its busy time in ms. */
export function topSelfTime(profile: CpuProfile, n: number): { busyMs: number; top: SelfTime[] } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, { name: string; where: string; us: number }>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i + 1] ?? 0;
    const frame = byId.get(id)?.callFrame;
    if (!frame || IDLE.has(frame.functionName)) return;
    busy += us;
    const file = frame.url.startsWith("file://") ? relative(ROOT, new URL(frame.url).pathname) : frame.url;
    // tsx's transpiled modules report every function on line 1: the file alone says more.
    const where = file && frame.lineNumber > 0 ? `${file}:${frame.lineNumber + 1}` : file;
    const name = frame.functionName || "(anonymous)";
    const key = `${name}\0${where}`;
    const entry = self.get(key) ?? { name, where, us: 0 };
    entry.us += us;
    self.set(key, entry);
  });
  const top = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, n)
    .map((e) => ({ name: e.name, where: e.where, ms: e.us / 1000, pct: busy ? (100 * e.us) / busy : 0 }));
  return { busyMs: busy / 1000, top };
}

/** Prints the top functions of each profile in `dir`; returns them as note lines. */
export function summarizeProfiles(dir: string, n: number, log: (line: string) => void): string[] {
  const notes: string[] = [];
  // CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile: thread 0 is the main one; others are loader workers.
  for (const file of readdirSync(dir).filter((f) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f))) {
    const { busyMs, top } = topSelfTime(JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile, n);
    log(`\n  coordinator CPU profile ${join(dir, file)}: busy ${(busyMs / 1000).toFixed(1)} s; top ${n} by self time:`);
    top.forEach((t, i) => log(`  ${String(i + 1).padStart(3)}. ${t.pct.toFixed(1).padStart(5)} %  ${t.name}  ${t.where}`));
    notes.push(`profile ${file}: busy ${(busyMs / 1000).toFixed(1)} s; top self time: ${top.map((t) => `${t.name} ${t.pct.toFixed(1)} %`).join(", ")}`);
  }
  if (notes.length === 0) log(`  no CPU profile in ${dir} (the coordinator writes it when it exits)`);
  return notes;
}
