import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createGrpcServerMetrics } from "../../src/monitor/index.js";
import { tallyCounter } from "../../src/monitor/tally-counter.js";

const series = async (registry: Registry) => (await registry.metrics()).split("\n").filter((l) => l.startsWith("grpc_server_") && !l.includes("_bucket"));

describe("the gRPC server metrics", () => {
  it("count every call and message exactly, each scrape the running total, under go-grpc-prometheus's names and labels", async () => {
    const registry = new Registry();
    const observe = createGrpcServerMetrics(registry);
    const connect = observe("/baton.v1.Coordinator/Connect", "bidi_stream");
    const submit = observe("/baton.v1.Control/SubmitTask", "unary");
    // Nothing counted yet: no series, as prom-client leaves a counter never incremented.
    expect((await series(registry)).filter((l) => !l.includes("handling_seconds"))).toEqual([]);
    connect.started();
    for (let i = 0; i < 5; i++) connect.received();
    for (let i = 0; i < 3; i++) connect.sent();
    submit.started();
    submit.received();
    submit.sent();
    submit.handled(0, 0.002);
    submit.started();
    submit.handled(7, 0.001);
    const c = 'grpc_type="bidi_stream",grpc_service="baton.v1.Coordinator",grpc_method="Connect"';
    const u = 'grpc_type="unary",grpc_service="baton.v1.Control",grpc_method="SubmitTask"';
    const first = await series(registry);
    for (const line of [
      `grpc_server_started_total{${c}} 1`,
      `grpc_server_started_total{${u}} 2`,
      `grpc_server_msg_received_total{${c}} 5`,
      `grpc_server_msg_received_total{${u}} 1`,
      `grpc_server_msg_sent_total{${c}} 3`,
      `grpc_server_handled_total{${u},grpc_code="OK"} 1`,
      `grpc_server_handled_total{${u},grpc_code="PermissionDenied"} 1`,
      `grpc_server_handling_seconds_count{${u}} 2`,
    ])
      expect(first).toContain(line);
    // A second scrape reports the same totals (not twice them); later messages add to them.
    expect(await series(registry)).toEqual(first);
    connect.received();
    connect.handled(1, 3);
    const later = await series(registry);
    expect(later).toContain(`grpc_server_msg_received_total{${c}} 6`);
    expect(later).toContain(`grpc_server_handled_total{${c},grpc_code="Canceled"} 1`);
  });

  it("a tally counter keeps label sets apart, the same labels sharing one count, and copies the labels it is given", async () => {
    const registry = new Registry();
    const tally = tallyCounter({ name: "t_total", help: "t", labelNames: ["a", "b"], registry });
    const labels = { a: "x", b: "y" };
    tally(labels).inc();
    labels.a = "changed";
    tally({ a: "x", b: "y" }).inc(2);
    tally({ a: "xy", b: "" }).inc();
    tally({ a: "x", b: "" }).inc(0);
    const text = (await registry.metrics()).split("\n").filter((l) => l.startsWith("t_total"));
    expect(text.sort()).toEqual(['t_total{a="x",b="y"} 3', 't_total{a="xy",b=""} 1'].sort());
  });
});
