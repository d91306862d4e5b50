// What one WatchEvents pattern costs the coordinator, before and after the matcher was
// made iterative and the fan-out indexed: the matcher alone on runs of "#", and the cost
// of routing one event to 50 watchers holding 10,000 patterns between them.
//   npm run bench:events
// The "before" is the old code, copied below; it runs in a worker thread that is stopped
// after BUDGET_MS, since one call of it can take minutes (or overflow the stack).
import { setMaxListeners } from "node:events";
import { Worker } from "node:worker_threads";
import { EventLog, topicMatches } from "../src/events/index.js";

const BUDGET_MS = 10_000;
const TOPIC = "task.t1.pending";

// The old src/events/topic-pattern.ts and EventLog fan-out (one watcher after another, each
// pattern after another), as plain JS for the worker.
const BEFORE = `
const { parentPort, workerData } = require("node:worker_threads");
function topicMatches(pattern, topic) {
  return match(pattern.split("."), 0, topic.split("."), 0);
}
function match(p, i, t, j) {
  if (i === p.length) return j === t.length;
  const seg = p[i];
  if (seg === "#") {
    for (let k = j; k <= t.length; k++) if (match(p, i + 1, t, k)) return true;
    return false;
  }
  if (j === t.length) return false;
  return (seg === "*" || seg === t[j]) && match(p, i + 1, t, j + 1);
}
function fanOut(watchers, topic) {
  let delivered = 0;
  for (const patterns of watchers) if (patterns.length === 0 || patterns.some((p) => topicMatches(p, topic))) delivered++;
  return delivered;
}
const { kind, pattern, watchers, topics, minMs } = workerData;
try {
  const start = performance.now();
  let calls = 0;
  do {
    if (kind === "match") topicMatches(pattern, topics[calls % topics.length]);
    else fanOut(watchers, topics[calls % topics.length]);
    calls++;
  } while (performance.now() - start < minMs);
  parentPort.postMessage({ us: ((performance.now() - start) * 1000) / calls });
} catch (err) {
  parentPort.postMessage({ error: err instanceof RangeError ? "stack overflow (RangeError)" : err.name + ": " + err.message });
}
`;

/** Runs the old code in a worker: microseconds per call, or why it gave no figure. */
function before(data: { kind: "match"; pattern: string; topics: string[]; minMs: number } | { kind: "fanout"; watchers: string[][]; topics: string[]; minMs: number }): Promise<string> {
  return new Promise((resolve) => {
    const worker = new Worker(BEFORE, { eval: true, workerData: data });
    const timer = setTimeout(() => void worker.terminate().then(() => resolve(`> ${BUDGET_MS / 1000} s (stopped)`)), BUDGET_MS);
    worker.once("message", (m: { us?: number; error?: string }) => {
      clearTimeout(timer);
      void worker.terminate();
      resolve(m.error ?? fmt(m.us!));
    });
    worker.once("error", (err) => {
      clearTimeout(timer);
      resolve(`${err.name}: ${err.message}`);
    });
  });
}

/** Microseconds per call of `fn`, over at least `minMs` (or `maxCalls` calls), after a warm-up. */
function after(fn: (i: number) => unknown, minMs = 300, maxCalls = Number.POSITIVE_INFINITY): string {
  for (let i = 0; i < 100; i++) fn(i);
  const start = performance.now();
  let calls = 0;
  do fn(calls++);
  while (performance.now() - start < minMs && calls < maxCalls);
  return fmt(((performance.now() - start) * 1000) / calls);
}

function fmt(us: number): string {
  if (us >= 1e6) return `${(us / 1e6).toFixed(2)} s`;
  if (us >= 1e3) return `${(us / 1e3).toFixed(2)} ms`;
  return `${us.toFixed(2)} µs`;
}

const row = (cells: Array<string | number>) => console.log(cells.map((c, i) => String(c).padEnd(i === 0 ? 10 : 30)).join(""));
const hashes = (n: number, tail: string) => Array.from({ length: n }, () => "#").join(".") + tail;

console.log(`matcher, one call: "#" repeated, then ".abc", against "${TOPIC}" (no match: the old code's worst case)`);
row(["segments", "bytes", "before", "after"]);
for (const n of [10, 20, 40, 80, 160, 400, 30_000]) {
  const pattern = hashes(n, ".abc");
  const old = await before({ kind: "match", pattern, topics: [TOPIC], minMs: 200 });
  row([n + 1, Buffer.byteLength(pattern), old, after(() => topicMatches(pattern, TOPIC))]);
}

// 10,000 patterns over 50 watchers (200 each). "names": what a dashboard watches (tasks and
// agents by id). "hostile": 32-segment runs of "#" ending in a literal that never matches,
// as costly for the old matcher as WatchEvents now allows.
const WATCHERS = 50;
const PER_WATCHER = 200;
const mixes: Record<string, (w: number, k: number) => string> = {
  names: (w, k) => (k % 2 ? `task.t${w}-${k}.#` : `agent.a${w}-${k}.*`),
  hostile: (w, k) => (k === 0 ? `${hashes(31, "")}.pending` : hashes(31, `.w${w}x${k}`)),
};
const topics = Array.from({ length: 64 }, (_, i) => (i % 2 ? `task.t${i % WATCHERS}-${i}.pending` : `agent.a${i % WATCHERS}-${i}.online`));
console.log(`\nfan-out, one event to ${WATCHERS} watchers holding ${WATCHERS * PER_WATCHER} patterns`);
row(["patterns", "events matched", "before", "after"]);
for (const [name, make] of Object.entries(mixes)) {
  const watchers = Array.from({ length: WATCHERS }, (_, w) => Array.from({ length: PER_WATCHER }, (_, k) => make(w, k)));
  const old = await before({ kind: "fanout", watchers, topics, minMs: 500 });
  const log = new EventLog({ retain: 1, watcherCapacity: Number.MAX_SAFE_INTEGER });
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  for (const patterns of watchers) log.watch(patterns, 0n, ac.signal);
  let matched = 0;
  for (const t of topics) if (watchers.some((ps) => ps.some((p) => topicMatches(p, t)))) matched++;
  // The watchers do not read: a bounded number of events keeps their queues small.
  const cost = after((i) => log.append({ topic: topics[i % topics.length]!, correlationId: "", reason: "", kind: { case: undefined } }), 300, 20_000);
  ac.abort();
  row([name, `${matched} of ${topics.length}`, old, cost]);
}
