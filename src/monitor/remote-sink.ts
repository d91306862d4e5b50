import { PerformanceMonitor } from "../../gen/baton/v1/performance_monitor_pb.js";
import type { CallBreaker } from "../breakers/index.js";
import type { PerformanceSink } from "../coordinator/index.js";
import type { Logger } from "../logging.js";
import { createClient, type Channel } from "../rpc/index.js";

/** A Performance Monitor in another process, over mTLS, every call through its breaker; reports are fire-and-forget. */
export function remotePerformanceMonitor(channel: Channel, breaker: CallBreaker, logger: Logger, callTimeoutMs = 5000): PerformanceSink {
  const client = createClient(PerformanceMonitor, channel);
  const opts = () => ({ deadline: callTimeoutMs });
  const report = (what: string, call: () => Promise<unknown>) => {
    breaker.call(call).catch((err: unknown) => logger.debug({ err: (err as Error).message, what }, "performance monitor call failed"));
  };
  return {
    metrics: (request) => breaker.call(() => client.getMetrics(request, opts())),
    recordUpdate: (update) => report("metrics_update", () => client.reportMetrics(update, opts())),
    // Per-directive outcomes travel in the round's PerformanceReport; there is no RPC for one alone.
    recordDirective: () => {},
    recordReport: (r) => report("performance_report", () => client.reportPerformance(r, opts())),
  };
}
