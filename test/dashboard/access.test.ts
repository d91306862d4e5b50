import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { buildConfig, ConfigError } from "../../src/config.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, TEST_JOURNAL_KEY } from "../helpers/server.js";
import { buildDashboard } from "./browser.js";
import { openSse } from "./sse.js";

const fx = useFixture();

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP(S) request to the admin port, any header allowed (Host included). */
function call(url: string, options: { method?: string; headers?: Record<string, string>; tls?: { ca?: string; cert?: string; key?: string } } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const request = u.protocol === "https:" ? httpsRequest : httpRequest;
    const req = request(u, { method: options.method ?? "GET", headers: options.headers ?? {}, ...(options.tls ?? {}) }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const ACT = { "x-baton-dashboard": "1" };

describe("dashboard access control", () => {
  it("on loopback needs nothing, but answers only to a loopback Host", async () => {
    buildDashboard();
    fx.srv = await startServer(fx.pki);
    const base = `http://localhost:${fx.srv.server.adminPort}`;
    const page = await call(`${base}/dashboard/`);
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toMatch(/text\/html/);
    expect(page.headers["content-security-policy"]).toMatch(/default-src 'self'/);
    expect((await call(`${base}/`)).headers.location).toBe("/dashboard/");
    expect(fx.srv.server.dashboardUrl).toBe(`${base}/dashboard/`);
    // A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) is refused.
    const rebound = await call(`${base}/dashboard/`, { headers: { host: `evil.example:${fx.srv.server.adminPort}` } });
    expect(rebound.status).toBe(403);
    expect(JSON.parse(rebound.body)).toMatchObject({ code: "PERMISSION_DENIED" });
    // The admin port's own routes are still there.
    expect((await call(`${base}/metrics`)).status).toBe(200);
  });

  it("refuses an action without the dashboard's header or from another origin; with both it acts through Control", async () => {
    fx.srv = await startServer(fx.pki);
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    await control.submitTask({ task: { taskId: "waits", requiredCapabilities: ["nobody-has-it"] } });
    const url = `http://localhost:${fx.srv.server.adminPort}/dashboard/api/tasks/waits/cancel`;
    const bare = await call(url, { method: "POST" });
    expect(bare.status).toBe(403);
    const foreign = await call(url, { method: "POST", headers: { ...ACT, origin: "http://evil.example" } });
    expect(foreign.status).toBe(403);
    expect(fx.srv.server.coordinator.getTask("waits").state).toBe(TaskState.PENDING);
    const ok = await call(url, { method: "POST", headers: { ...ACT, origin: `http://localhost:${fx.srv.server.adminPort}` } });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ task: { state: "TASK_STATE_CANCELLED" } });
    // Errors keep their meaning: cancelling an ended task is FAILED_PRECONDITION (409), an unknown one NOT_FOUND.
    const again = await call(url.replace("waits", "nope"), { method: "POST", headers: ACT });
    expect(again.status).toBe(404);
    const resubmit = await call(url.replace("cancel", "resubmit"), { method: "POST", headers: ACT });
    expect(resubmit.status).toBe(409);
    expect(JSON.parse(resubmit.body)).toMatchObject({ code: "FAILED_PRECONDITION" });
  });

  it("applies the policy's capabilities to actions, as Control does", async () => {
    const dir = fx.pki.writeFiles({
      "policy.json": JSON.stringify({ roles: { operator: ["tasks.read", "tasks.submit", "agents.read", "coordination.read", "events.watch", "metrics.*"] } }),
    });
    fx.srv = await startServer(fx.pki, { security: { policyFile: `${dir}/policy.json` } });
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    await control.submitTask({ task: { taskId: "kept", requiredCapabilities: ["nobody-has-it"] } });
    const base = `http://localhost:${fx.srv.server.adminPort}/dashboard/api`;
    const cancel = await call(`${base}/tasks/kept/cancel`, { method: "POST", headers: ACT });
    expect(cancel.status).toBe(403);
    expect(JSON.parse(cancel.body).message).toMatch(/tasks\.cancel/);
    const drain = await call(`${base}/agents/any/drain`, { method: "POST", headers: ACT });
    expect(drain.status).toBe(403);
    expect(JSON.parse(drain.body).message).toMatch(/agents\.drain/);
    const explain = await call(`${base}/tasks/kept/explain`);
    expect(explain.status).toBe(403);
    expect(fx.srv.server.coordinator.getTask("kept").state).toBe(TaskState.PENDING);
    // What the policy still grants is shown, and the page is told what it may not do.
    const sse = await openSse(`${base}/events`);
    expect(sse.status).toBe(200);
    const snapshot = JSON.parse((await sse.next("snapshot")).data);
    expect(snapshot.me.can).toEqual({ cancel: false, resubmit: true, drain: false, explain: false });
    sse.close();
  });

  it("off loopback: off by default, and refused at start when asked for without mutual TLS", async () => {
    expect(() => buildConfig({ adminListen: "0.0.0.0:9464", dashboard: { enabled: "on" } })).toThrow(ConfigError);
    expect(() => buildConfig({ adminListen: "0.0.0.0:9464", dashboard: { enabled: "on" } })).toThrow(/dashboard\.mutualTls/);
    expect(() => buildConfig({ dashboard: { enabled: "sometimes" as "on" } })).toThrow(/dashboard\.enabled/);
    fx.srv = await startServer(fx.pki, { adminListen: "0.0.0.0:0" });
    const base = `http://localhost:${fx.srv.server.adminPort}`;
    expect((await call(`${base}/dashboard/`)).status).toBe(404);
    expect((await call(`${base}/metrics`)).status).toBe(200);
    expect(fx.srv.server.dashboardUrl).toBe("");
  });

  it("with mutual TLS: the page needs a certificate from the CA, and the data an operator's", async () => {
    const operator = await fx.pki.issue("operator", "alice");
    const agent = await fx.pki.issue("managed_agent", "worker");
    const dir = fx.pki.writeFiles({ "ca.pem": fx.pki.ca.certPem, "coordinator.pem": fx.pki.server.certPem, "coordinator.key": fx.pki.server.keyPem });
    fx.srv = await startServer(fx.pki, { adminListen: "0.0.0.0:0", tls: { certsDir: dir }, dashboard: { mutualTls: true } });
    expect(fx.srv.server.dashboardUrl).toMatch(/^https:\/\/0\.0\.0\.0:\d+\/dashboard\/$/);
    const base = `https://localhost:${fx.srv.server.adminPort}`;
    const ca = fx.pki.ca.certPem;
    const anonymous = await call(`${base}/dashboard/`, { tls: { ca } });
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.body)).toMatchObject({ code: "UNAUTHENTICATED" });
    // The probes and the scrape stay reachable over TLS without a certificate.
    expect((await call(`${base}/metrics`, { tls: { ca } })).status).toBe(200);
    const asAgent = { ca, cert: agent.certPem, key: agent.keyPem };
    expect((await call(`${base}/dashboard/`, { tls: asAgent })).status).toBe(200);
    const agentEvents = await call(`${base}/dashboard/api/events`, { tls: asAgent });
    expect(agentEvents.status).toBe(403);
    expect(JSON.parse(agentEvents.body).message).toMatch(/managed_agent/);
    expect((await call(`${base}/dashboard/api/tasks/x/cancel`, { method: "POST", headers: ACT, tls: asAgent })).status).toBe(403);
    const sse = await openSse(`${base}/dashboard/api/events`, {}, { ca, cert: operator.certPem, key: operator.keyPem });
    expect(sse.status).toBe(200);
    const snapshot = JSON.parse((await sse.next("snapshot")).data);
    expect(snapshot.me.identity).toBe("spiffe://baton.local/operator/alice");
    sse.close();
    // A certificate from another CA fails at the TLS layer's verification: unauthenticated.
    const { makePki } = await import("../helpers/pki.js");
    const other = await makePki();
    const stranger = await other.issue("operator", "mallory");
    expect((await call(`${base}/dashboard/`, { tls: { ca, cert: stranger.certPem, key: stranger.keyPem } })).status).toBe(401);
    other.cleanup();
  });

  it("sends no sensitive_input and no secret: not in the snapshot, not in events", async () => {
    fx.srv = await startServer(fx.pki);
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const sse = await openSse(`http://localhost:${fx.srv.server.adminPort}/dashboard/api/events`);
    await sse.next("snapshot");
    const MARKER = "s3cr3t-marker-7f2c";
    await control.submitTask({ task: { taskId: "sealed", requiredCapabilities: ["nobody-has-it"], input: { visible: "plain-input-ok" }, sensitiveInput: { apiKey: MARKER } } });
    // The task's own change (a round may start planning it first: rounds are not journaled, and name no task until placed).
    let change = JSON.parse((await sse.next("change")).data);
    while (!change.task) change = JSON.parse((await sse.next("change")).data);
    expect(change.task.spec.taskId).toBe("sealed");
    expect(change.task.spec.input).toEqual({ visible: "plain-input-ok" });
    // A new stream's snapshot holds the pending task too.
    const again = await openSse(`http://localhost:${fx.srv.server.adminPort}/dashboard/api/events`);
    const snapshot = JSON.parse((await again.next("snapshot")).data);
    expect(snapshot.tasks.map((t: { spec: { taskId: string } }) => t.spec.taskId)).toContain("sealed");
    for (const text of [sse.raw, again.raw]) {
      expect(text).toContain("plain-input-ok");
      expect(text).not.toContain(MARKER);
      expect(text).not.toContain("sensitiveInput");
      expect(text).not.toContain(TEST_JOURNAL_KEY);
      expect(text).not.toContain("PRIVATE KEY");
    }
    sse.close();
    again.close();
  });
});
