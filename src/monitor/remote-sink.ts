import { create } from "@bufbuild/protobuf";
import { MetricsUpdateSchema, PerformanceMonitor, type MetricsUpdate } from "../../gen/baton/v1/performance_monitor_pb.js";
import type { CallBreaker } from "../breakers/index.js";
import type { PerformanceSink } from "../coordinator/index.js";
import type { Logger } from "../logging.js";
import { createClient, type Channel, type ServiceClient } from "../rpc/index.js";

/** Options of remotePerformanceMonitor. */
export interface RemoteMonitorOptions {
  /** A call's deadline, ms. Default 5000. */
  callTimeoutMs?: number;
  /** How often coalesced MetricsUpdates go out, ms. Default 1000. */
  flushMs?: number;
}

// Directives whose latest update is held between flushes, at most; past it, a flush goes at once.
const MAX_HELD = 10_000;

/**
 * A Performance Monitor in another process, over mTLS, every call through its breaker;
 * reports are fire-and-forget. MetricsUpdates are fed off the hot path: each directive's
 * latest update is held and sent once a flush interval, with `custom.coalesced` saying how
 * many it stands for, so a thousand agents reporting progress as fast as they can cost the
 * monitor a call per directive a second, not one per update. Given a function rather than a
 * channel, the monitor is resolved on each call, inside the breaker (one found in the
 * service registry: it may be replaced, or none registered, which fails the call).
 */
export function remotePerformanceMonitor(channel: Channel | (() => Channel), breaker: CallBreaker, logger: Logger, options: RemoteMonitorOptions = {}): PerformanceSink {
  let last: { channel: Channel; client: ServiceClient<typeof PerformanceMonitor> } | undefined;
  const clientNow = () => {
    const now = typeof channel === "function" ? channel() : channel;
    if (last?.channel !== now) last = { channel: now, client: createClient(PerformanceMonitor, now) };
    return last.client;
  };
  const callTimeoutMs = options.callTimeoutMs ?? 5000;
  const flushMs = options.flushMs ?? 1000;
  const opts = () => ({ deadline: callTimeoutMs });
  const report = (what: string, call: () => Promise<unknown>) => {
    breaker.call(call).catch((err: unknown) => logger.debug({ err: (err as Error).message, what }, "performance monitor call failed"));
  };
  const held = new Map<string, { update: MetricsUpdate; count: number }>();
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    const batch = [...held.values()];
    held.clear();
    for (const { update, count } of batch) {
      const sent = count > 1 ? create(MetricsUpdateSchema, { ...update, custom: { ...update.custom, coalesced: count } }) : update;
      report("metrics_update", async () => clientNow().reportMetrics(sent, opts()));
    }
  };
  return {
    metrics: (request) => breaker.call(async () => clientNow().getMetrics(request, opts())),
    recordUpdate: (update) => {
      const key = `${update.sourceAgent}\0${update.directiveId}`;
      const entry = held.get(key);
      held.set(key, { update, count: (entry?.count ?? 0) + 1 });
      if (held.size >= MAX_HELD) flush();
      else if (!timer) (timer = setTimeout(flush, flushMs)).unref();
    },
    // Per-directive outcomes travel in the round's PerformanceReport; there is no RPC for one alone.
    recordDirective: () => {},
    recordReport: (r) => report("performance_report", async () => clientNow().reportPerformance(r, opts())),
  };
}
