import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { Code } from "../../src/errors.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { ROOT } from "../helpers/process.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

/** The metric names a PromQL expression reads: identifiers that are not functions, keywords, labels or durations. */
function metricsIn(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, "")
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "");
  const keywords = new Set(["by", "without", "on", "ignoring", "and", "or", "unless", "bool", "offset", "le"]);
  return [...bare.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?/g)].filter((m) => !m[2] && !keywords.has(m[1]!)).map((m) => m[1]!);
}

/** Every expression of docs/alerts.yml (`expr:` lines, folded ones included) and of the Grafana dashboard. */
function documentedExpressions(): string[] {
  const exprs: string[] = [];
  const lines = readFileSync(join(ROOT, "docs/alerts.yml"), "utf8").split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)expr:\s*(.*)$/.exec(lines[i]!);
    if (!m) continue;
    if (m[2] !== "|") {
      exprs.push(m[2]!);
      continue;
    }
    const block: string[] = [];
    while (i + 1 < lines.length && (lines[i + 1]!.startsWith(`${m[1]}  `) || lines[i + 1]!.trim() === "")) block.push(lines[++i]!);
    exprs.push(block.join(" "));
  }
  const dashboard = JSON.parse(readFileSync(join(ROOT, "docs/grafana-dashboard.json"), "utf8")) as { panels: Array<{ targets: Array<{ expr: string }> }> };
  for (const p of dashboard.panels) for (const t of p.targets) exprs.push(t.expr);
  return exprs;
}

/** Sample names a /metrics page can show: each family's name, and a histogram's _bucket, _sum and _count. */
function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(m[1]!);
    if (m[2] === "histogram" || m[2] === "summary") for (const s of ["_bucket", "_sum", "_count"]) names.add(`${m[1]}${s}`);
  }
  return names;
}

describe("metrics people can use", () => {
  it("standard gRPC server metrics in go-grpc-prometheus names, refused calls and streams included", async () => {
    fx.srv = await startServer(fx.pki);
    const ops = await fx.pki.credentials("operator", "ops");
    const control = createClient(Control, fx.channel(ops));
    await createClient(Health, fx.channel(ops)).check({ service: "" });
    const asAgent = createClient(Control, fx.channel(await fx.pki.credentials("managed_agent", "sneaky")));
    await expect(asAgent.submitTask({ task: { taskId: "x" } })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
    await expect(control.getTask({ taskId: "missing" })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    const agent = await fx.agent("worker", { capabilities: ["work"] });
    await agent.connect();
    void agent.run(async (_d, ctx) => {
      ctx.progress(50);
      return { ok: true };
    });
    await control.submitTask({ task: { taskId: "m1", requiredCapabilities: ["work"] } });
    await waitFor(() => fx.srv.server.coordinator.getTask("m1").state === TaskState.SUCCEEDED, 30_000, "m1 to succeed");
    const text = await (await fetch(`http://127.0.0.1:${fx.srv.server.adminPort}/metrics`)).text();
    const value = (sample: string) => Number(new RegExp(`^${sample.replace(/[{}.\\/|]/g, "\\$&")} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
    expect(value('grpc_server_started_total{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check"}')).toBeGreaterThanOrEqual(1);
    expect(value('grpc_server_handled_total{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="OK"}')).toBeGreaterThanOrEqual(1);
    expect(value('grpc_server_handled_total{grpc_type="unary",grpc_service="baton.v1.Control",grpc_method="SubmitTask",grpc_code="PermissionDenied"}')).toBe(1);
    expect(value('grpc_server_handled_total{grpc_type="unary",grpc_service="baton.v1.Control",grpc_method="GetTask",grpc_code="NotFound"}')).toBe(1);
    expect(value('grpc_server_msg_received_total{grpc_type="bidi_stream",grpc_service="baton.v1.Coordinator",grpc_method="Connect"}')).toBeGreaterThanOrEqual(2);
    expect(value('grpc_server_msg_sent_total{grpc_type="bidi_stream",grpc_service="baton.v1.Coordinator",grpc_method="Connect"}')).toBeGreaterThanOrEqual(2);
    expect(value('grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="baton.v1.Control",grpc_method="SubmitTask"}')).toBeGreaterThanOrEqual(2);
    // The spec's three names, as the spec spells them, and the operations gauges.
    expect(value('message_latency_count{source="baton-coordinator",destination="worker"}')).toBeGreaterThanOrEqual(1);
    expect(value('message_latency_count{source="worker",destination="baton-coordinator"}')).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^directive_completion_time_count\{directive_type="assignTask"\} 1$/m);
    expect(text).toMatch(/^coordination_success_rate\{coordinator_id="baton-coordinator"\} 1$/m);
    expect(value('baton_agent_breaker_state{agent="worker",state="closed"}')).toBe(1);
    expect(value('baton_coordination_round_transitions_total{state="idle"}')).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^baton_coordination_rounds\{state="monitoring"\} \d+$/m);
    expect(text).toMatch(/^baton_key_rotations_total \d+$/m);
  });

  it("every metric the Grafana dashboard and the alert rules name exists on a real server's /metrics", async () => {
    fx.srv = await startServer(fx.pki);
    const text = await (await fetch(`http://127.0.0.1:${fx.srv.server.adminPort}/metrics`)).text();
    const exposed = exposedNames(text);
    const exprs = documentedExpressions();
    expect(exprs.length).toBeGreaterThan(20);
    const named = [...new Set(exprs.flatMap(metricsIn))].sort();
    expect(named).toContain("grpc_server_handled_total");
    expect(named).toContain("baton_agent_unavailable_total");
    expect(named.filter((n) => !exposed.has(n))).toEqual([]);
  });
});
