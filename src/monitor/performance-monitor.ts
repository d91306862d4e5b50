import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromMs, timestampMs, timestampNow } from "@bufbuild/protobuf/wkt";
import {
  AgentMetricsSchema,
  LatencySummarySchema,
  SystemMetricsSchema,
  type LatencySummary,
  type MetricsRequest,
  type MetricsUpdate,
  type PerformanceMonitor,
  type PerformanceReport,
  type SystemMetrics,
} from "../../gen/baton/v1/performance_monitor_pb.js";
import type { ServiceImpl } from "../rpc/index.js";
import { delay } from "../streams/index.js";

interface AgentFigures {
  utilization: number;
  inFlight: number;
  completion: number;
  lastReport: number;
  completed: number[];
  failed: number[];
}

const WINDOW_MS = 60_000;
/** The longest window figures are computed over, ms (SecondCounts' span). */
const MAX_WINDOW_MS = 600_000;
const MAX_SAMPLES = 10_000;

/**
 * Counts per second over the last ten minutes: a message rate in constant memory and time
 * per message, however many arrive (100,000 progress updates a second are a counter bump each).
 */
class SecondCounts {
  private readonly seconds = new Float64Array(600);
  private readonly counts = new Float64Array(600);

  add(nowMs: number, n: number): void {
    const second = Math.floor(nowMs / 1000);
    const i = second % this.seconds.length;
    if (this.seconds[i] !== second) {
      this.seconds[i] = second;
      this.counts[i] = 0;
    }
    this.counts[i]! += n;
  }

  /** Counted at or after `sinceMs` (to the second). */
  since(sinceMs: number): number {
    const from = Math.floor(sinceMs / 1000);
    let total = 0;
    for (let i = 0; i < this.seconds.length; i++) if (this.seconds[i]! >= from) total += this.counts[i]!;
    return total;
  }
}

function summarize(samples: number[]): LatencySummary {
  if (samples.length === 0) return create(LatencySummarySchema, {});
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return create(LatencySummarySchema, { count: BigInt(sorted.length), p50Ms: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99), maxMs: sorted.at(-1)! });
}

/**
 * The Performance Monitor's state: MetricsUpdates per agent, PerformanceReports per
 * round, and SystemMetrics computed from them over a sliding window.
 */
export class PerformanceStore {
  private readonly agents = new Map<string, AgentFigures>();
  private readonly messages = new SecondCounts();
  private readonly rounds: Array<{ at: number; ok: boolean }> = [];
  private readonly completionMs: number[] = [];
  private readonly latencyMs: number[] = [];
  private completedRounds = 0;
  private failedRounds = 0;

  constructor(private readonly now: () => number = Date.now) {}

  private agent(id: string): AgentFigures {
    let a = this.agents.get(id);
    if (!a) this.agents.set(id, (a = { utilization: 0, inFlight: 0, completion: 0, lastReport: 0, completed: [], failed: [] }));
    return a;
  }

  // Keeps the latest MAX_SAMPLES, trimmed once the list is twice that: amortized O(1) a sample, not a move of all of them.
  private push(list: number[], value: number): void {
    list.push(value);
    if (list.length >= 2 * MAX_SAMPLES) list.splice(0, list.length - MAX_SAMPLES);
  }

  private recent(list: number[]): number[] {
    return list.length > MAX_SAMPLES ? list.slice(-MAX_SAMPLES) : list;
  }

  /** Records a MetricsUpdate (message latency is its age on arrival). */
  recordUpdate(update: MetricsUpdate): void {
    const now = this.now();
    const a = this.agent(update.sourceAgent);
    a.utilization = update.resourceUtilization;
    a.completion = update.completionPercentage;
    // The coordinator adds the agent's load (directives in flight) to the figures it forwards.
    if (update.custom.in_flight !== undefined) a.inFlight = update.custom.in_flight;
    a.lastReport = now;
    // A coordinator that coalesces updates for a remote monitor says how many this one stands for.
    this.messages.add(now, Math.max(1, update.custom.coalesced ?? 1));
    if (update.timestamp) this.push(this.latencyMs, Math.max(0, now - timestampMs(update.timestamp)));
  }

  /** Records a directive's end for an agent. */
  recordDirective(agentId: string, ok: boolean): void {
    this.push(ok ? this.agent(agentId).completed : this.agent(agentId).failed, this.now());
  }

  /** Records a PerformanceReport (one per finished round). */
  recordReport(report: PerformanceReport): void {
    const now = this.now();
    this.messages.add(now, 1);
    this.rounds.push({ at: now, ok: report.succeeded });
    if (this.rounds.length > MAX_SAMPLES) this.rounds.shift();
    if (report.succeeded) this.completedRounds++;
    else this.failedRounds++;
    for (const ms of Object.values(report.directiveCompletionMs)) this.push(this.completionMs, ms);
  }

  /** SystemMetrics for a request (agents filtered, window in the request or 60 s). */
  async metrics(request: Pick<MetricsRequest, "requestId" | "agentIds" | "window">): Promise<SystemMetrics> {
    return this.metricsNow(request);
  }

  /** The same, synchronously. */
  metricsNow(request: Pick<MetricsRequest, "requestId" | "agentIds" | "window">): SystemMetrics {
    const now = this.now();
    // At most what the per-second counts cover (ten minutes): a longer window would undercount.
    const windowMs = Math.min(request.window ? durationMs(request.window) || WINDOW_MS : WINDOW_MS, MAX_WINDOW_MS);
    const since = now - windowMs;
    const inWindow = (xs: number[]) => xs.filter((t) => t >= since).length;
    const wanted = request.agentIds.length ? new Set(request.agentIds) : undefined;
    const agents = [...this.agents.entries()]
      .filter(([id]) => !wanted || wanted.has(id))
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([agentId, a]) =>
        create(AgentMetricsSchema, { agentId, utilization: a.utilization, inFlight: a.inFlight, completed: BigInt(inWindow(a.completed)), failed: BigInt(inWindow(a.failed)), ...(a.lastReport ? { lastReport: timestampFromMs(a.lastReport) } : {}) }),
      );
    const total = this.completedRounds + this.failedRounds;
    return create(SystemMetricsSchema, {
      requestId: request.requestId,
      timestamp: timestampNow(),
      agents,
      messagesPerSecond: this.messages.since(since) / (windowMs / 1000),
      coordinationsPerSecond: this.rounds.filter((r) => r.at >= since).length / (windowMs / 1000),
      messageLatency: summarize(this.recent(this.latencyMs)),
      directiveCompletionTime: summarize(this.recent(this.completionMs)),
      rounds: { $typeName: "baton.v1.RoundOutcomes", completed: BigInt(this.completedRounds), failed: BigInt(this.failedRounds), successRate: total ? this.completedRounds / total : 0 },
    });
  }
}

/** The PerformanceMonitor service over a store (embedded in baton serve by default). */
export function createPerformanceMonitorService(store: PerformanceStore): ServiceImpl<typeof PerformanceMonitor> {
  return {
    async getMetrics(req) {
      return store.metrics(req);
    },
    async reportMetrics(req) {
      store.recordUpdate(req);
      return { $typeName: "baton.v1.ReportMetricsResponse" };
    },
    async reportPerformance(req) {
      store.recordReport(req);
      return { $typeName: "baton.v1.ReportPerformanceResponse" };
    },
    async *watchMetrics(req, ctx) {
      const interval = req.interval ? Math.max(100, durationMs(req.interval)) : 1000;
      while (!ctx.signal.aborted) {
        yield store.metricsNow({ requestId: "", agentIds: req.agentIds, window: undefined });
        await delay(interval, ctx.signal).catch(() => undefined);
      }
    },
  };
}
