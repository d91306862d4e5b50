import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { MetricsUpdateSchema, PerformanceMonitor } from "../../gen/baton/v1/performance_monitor_pb.js";
import { createCallBreaker } from "../../src/breakers/index.js";
import { remotePerformanceMonitor } from "../../src/monitor/index.js";
import { clientCredentials, createChannel, createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitForAsync } from "../helpers/server.js";

// A remote Performance Monitor is fed off the hot path: each directive's latest update,
// once a flush interval, saying how many it stands for. A real monitor process's server,
// in this process, over mTLS.

const fx = useFixture();

describe("a remote Performance Monitor", () => {
  it("gets each directive's latest update once a flush, and counts every update", async () => {
    fx.srv = await startServer(fx.pki, { services: { only: "performance-monitor" } });
    const creds = clientCredentials({ ca: fx.pki.ca.certPem, cert: fx.pki.server.certPem, key: fx.pki.server.keyPem });
    const channel = createChannel(fx.srv.address, creds);
    fx.defer(() => channel.close());
    // Every call to the monitor goes through its breaker: counted there.
    const breaker = createCallBreaker("performance-monitor", fx.srv.logger);
    let calls = 0;
    const counting = { ...breaker, call: <T>(fn: () => Promise<T>) => (calls++, breaker.call(fn)) };
    const sink = remotePerformanceMonitor(channel, counting as typeof breaker, fx.srv.logger, { flushMs: 50 });
    const agents = ["a1", "a2", "a3"];
    const per = 400;
    for (let i = 1; i <= per; i++) {
      for (const agent of agents) {
        sink.recordUpdate(create(MetricsUpdateSchema, { eventId: crypto.randomUUID(), timestamp: timestampNow(), sourceAgent: agent, directiveId: `d-${agent}`, resourceUtilization: i / per, completionPercentage: (100 * i) / per, custom: { in_flight: 1 } }));
      }
    }
    const pm = createClient(PerformanceMonitor, channel);
    const read = () => pm.getMetrics({ requestId: crypto.randomUUID(), timestamp: timestampNow() });
    // Every update counted (the monitor's rate over its 60 s window), from a few calls.
    await waitForAsync(async () => Math.round((await read()).messagesPerSecond * 60) === agents.length * per, 30_000, "every update counted by the monitor");
    const metrics = await read();
    expect(metrics.agents.map((a) => [a.agentId, a.utilization])).toEqual(agents.map((a) => [a, 1]));
    expect(calls).toBeGreaterThanOrEqual(agents.length);
    expect(calls).toBeLessThanOrEqual(agents.length * 3);
  });
});

describe("the Performance Monitor's figures", () => {
  it("count every message of a busy minute, not only the last 10,000", async () => {
    const { PerformanceStore } = await import("../../src/monitor/index.js");
    let now = 1_000_000;
    const store = new PerformanceStore(() => now);
    for (let i = 0; i < 25_000; i++) {
      now += 1;
      store.recordUpdate(create(MetricsUpdateSchema, { eventId: "e", sourceAgent: "a1", directiveId: "d1", resourceUtilization: 0.5, custom: {} }));
    }
    expect(Math.round(store.metricsNow({ requestId: "r", agentIds: [], window: undefined }).messagesPerSecond * 60)).toBe(25_000);
  });
});

describe("the Performance Monitor's window", () => {
  it("is at most ten minutes: a longer one is taken as ten, not undercounted", async () => {
    const { PerformanceStore } = await import("../../src/monitor/index.js");
    const { durationFromMs } = await import("@bufbuild/protobuf/wkt");
    let now = 10_000_000;
    const store = new PerformanceStore(() => now);
    for (let i = 0; i < 600; i++) {
      now += 1000;
      store.recordUpdate(create(MetricsUpdateSchema, { eventId: "e", sourceAgent: "a1", directiveId: "d1", custom: {} }));
    }
    const hour = store.metricsNow({ requestId: "r", agentIds: [], window: durationFromMs(3_600_000) });
    // 600 updates over the last 600 s: one a second, whatever window was asked for past that.
    expect(hour.messagesPerSecond).toBeCloseTo(1, 1);
  });
});
