import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import type { BatonAgent } from "../../src/agent/index.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { ROOT } from "../helpers/process.js";
import { startServer, waitFor } from "../helpers/server.js";
import { browserMissing, buildDashboard, launchBrowser } from "./browser.js";

const fx = useFixture();
const missing = browserMissing();
let browser: Awaited<ReturnType<typeof launchBrowser>> | undefined;

/** The task a directive is about. */
function taskOf(d: CoordinationDirective): string {
  return d.parameters?.kind.case === "assignTask" ? d.parameters.kind.value.taskId : "";
}

/** Resolves when release() is called: lets a test hold a task mid-way. */
function gate(): { wait: Promise<void>; release(): void } {
  let release!: () => void;
  const wait = new Promise<void>((r) => (release = r));
  return { wait, release };
}

describe.skipIf(missing !== "")(`dashboard in a real browser${missing ? ` (skipped: ${missing})` : ""}`, () => {
  beforeAll(async () => {
    buildDashboard();
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("shows progress moving to done, explains a waiting task, resubmits a dead letter, drains an agent; no sensitive input on the page", async () => {
    fx.srv = await startServer(fx.pki, { dashboard: { pulseMs: 500 }, tasks: { maxAttempts: 1, progressEventIntervalMs: 50 } });
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const longTask = gate();
    const progressed = gate();
    let doomedMayRun = false;
    const handler = async (d: CoordinationDirective, ctx: { progress(p: number): void }) => {
      const id = taskOf(d);
      if (id === "long") {
        ctx.progress(40);
        progressed.release();
        await longTask.wait;
        ctx.progress(100);
      }
      if (id === "doomed" && !doomedMayRun) throw new Error("the doomed task's input is refused by this agent");
      return { done: id };
    };
    const agents: BatonAgent[] = [];
    for (const [id, labels] of [["worker-1", { zone: "eu-1" }], ["worker-2", { zone: "eu-2" }]] as const) {
      const agent = await fx.agent(id, { capabilities: ["work"], labels, maxInFlight: 4, utilization: () => (id === "worker-1" ? 0.35 : 0.1) });
      await agent.connect();
      void agent.run(handler);
      agents.push(agent);
    }
    // However the test ends, the held task is let go before its agents close (deferred last, so run first).
    fx.defer(() => longTask.release());
    const drained = new Promise<void>((resolve) => agents[1]!.once("drain", () => resolve()));

    const page = await browser!.context.newPage();
    const requests: string[] = [];
    page.on("request", (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`));
    const external = new Set<string>();
    page.on("request", (r) => {
      const u = new URL(r.url());
      if (u.port !== String(fx.srv.server.adminPort)) external.add(u.href);
    });
    await page.goto(fx.srv.server.dashboardUrl);
    await page.locator('[data-testid="live"]', { hasText: "live" }).waitFor();
    await page.locator('tr[data-agent="worker-2"][data-state="online"]').waitFor();

    const MARKER = "sealed-marker-91d3";
    await control.submitTask({ task: { taskId: "long", requiredCapabilities: ["work"], target: { agentId: "worker-1" } } });
    await control.submitTask({ task: { taskId: "needs-gpu", requiredCapabilities: ["gpu"] } });
    await control.submitTask({ task: { taskId: "vault", requiredCapabilities: ["vault"], sensitiveInput: { password: MARKER } } });
    await control.submitTask({ task: { taskId: "doomed", requiredCapabilities: ["work"], target: { agentId: "worker-1" } } });
    for (let i = 1; i <= 6; i++) await control.submitTask({ task: { taskId: `quick-${i}`, requiredCapabilities: ["work"] } });

    // The running task's bar moves with the agent's progress.
    await progressed.wait;
    await page.locator('tr[data-task="long"][data-state="running"] progress[data-progress="40"]').waitFor();

    // A waiting task says why at a click.
    await page.locator('tr[data-task="needs-gpu"] button[data-action="explain"]').click();
    await page.locator('[data-testid="explanation"]', { hasText: "gpu" }).waitFor();

    // The dead letter, with its attempt and reason, and a resubmit button.
    const dead = page.locator('tr[data-dead-letter="doomed"]');
    await dead.waitFor();
    await expect(dead.textContent()).resolves.toMatch(/refused by this agent/);

    // Drain an agent from the page: the coordinator tells it, the table shows it.
    await page.locator('tr[data-agent="worker-2"] button[data-action="drain"]').click();
    await drained;
    await page.locator('tr[data-agent="worker-2"][data-state="draining"]').waitFor();
    await page.locator('tr[data-task="quick-6"][data-state="succeeded"]').waitFor();

    // The artifact: the page mid-way (a bar at 40 %, a dead letter, a pending task explained, a draining agent).
    mkdirSync(join(ROOT, "docs"), { recursive: true });
    await page.screenshot({ path: join(ROOT, "docs", "dashboard.png"), fullPage: true });

    doomedMayRun = true;
    await dead.locator('button[data-action="resubmit"]').click();
    await page.locator('tr[data-task="doomed"][data-state="succeeded"]').waitFor();
    expect(fx.srv.server.coordinator.getTask("doomed").state).toBe(TaskState.SUCCEEDED);
    await expect(page.locator('tr[data-dead-letter="doomed"]').count()).resolves.toBe(0);

    longTask.release();
    const done = page.locator('tr[data-task="long"][data-state="succeeded"]');
    await done.waitFor();
    await expect(done.locator("progress").getAttribute("data-progress")).resolves.toBe("100");
    await expect(done.textContent()).resolves.toMatch(/done/);

    // Nothing sealed reaches the page, nothing came from elsewhere, and one event stream fed it all: no polling.
    await page.locator('tr[data-task="vault"][data-state="pending"]').waitFor();
    expect(await page.content()).not.toContain(MARKER);
    expect([...external]).toEqual([]);
    expect(requests.filter((r) => r.endsWith("/api/events")).length).toBe(1);
    expect(requests.filter((r) => r.startsWith("GET /dashboard/api/") && !r.endsWith("/api/events"))).toEqual(["GET /dashboard/api/tasks/needs-gpu/explain"]);
    await waitFor(() => fx.srv.server.coordinator.getTask("long").state === TaskState.SUCCEEDED, 30_000, "the long task to succeed");
    await page.close();
  });

  it("over mutual TLS an operator's browser, presenting its certificate, sees the page live", async () => {
    const dir = fx.pki.writeFiles({ "ca.pem": fx.pki.ca.certPem, "coordinator.pem": fx.pki.server.certPem, "coordinator.key": fx.pki.server.keyPem });
    fx.srv = await startServer(fx.pki, { tls: { certsDir: dir }, dashboard: { mutualTls: true, pulseMs: 500 } });
    const origin = `https://localhost:${fx.srv.server.adminPort}`;
    const operator = await fx.pki.issue("operator", "alice");
    const withCert = await launchBrowser({ clientCertificates: [{ origin, cert: Buffer.from(operator.certPem), key: Buffer.from(operator.keyPem) }] });
    fx.defer(() => withCert.close());
    const page = await withCert.context.newPage();
    await page.goto(`${origin}/dashboard/`);
    await page.locator('[data-testid="live"]', { hasText: "live" }).waitFor();
    // Waited for, not read once: "live" shows when the event stream opens, before its snapshot names the caller.
    await page.locator("header .me", { hasText: "spiffe://baton.local/operator/alice" }).waitFor();
    await expect(page.locator("header .me").textContent()).resolves.toBe("spiffe://baton.local/operator/alice");
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    await control.submitTask({ task: { taskId: "over-tls", requiredCapabilities: ["nobody-has-it"] } });
    await page.locator('tr[data-task="over-tls"][data-state="pending"]').waitFor();
    await page.close();
  });

  it("reconnects after the stream is cut and resumes from its last event id", async () => {
    fx.srv = await startServer(fx.pki, { dashboard: { pulseMs: 500 } });
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const page = await browser!.context.newPage();
    const streams: Array<string | undefined> = [];
    page.on("request", (r) => {
      if (r.url().endsWith("/api/events")) void r.allHeaders().then((h) => streams.push(h["last-event-id"]));
    });
    await page.goto(fx.srv.server.dashboardUrl);
    await page.locator('[data-testid="live"]', { hasText: "live" }).waitFor();
    await control.submitTask({ task: { taskId: "before-cut", requiredCapabilities: ["nobody-has-it"] } });
    await page.locator('tr[data-task="before-cut"]').waitFor();
    // Cut every open stream, as a proxy or a network blip would; the browser reconnects by itself.
    fx.srv.server.events.close();
    await waitFor(() => streams.length >= 2, 30_000, "the browser to reconnect its event stream");
    expect(streams[0]).toBeUndefined();
    expect(streams[1]).toMatch(/^[0-9a-f]{12}-\d+$/);
    await page.locator('[data-testid="live"]', { hasText: "live" }).waitFor();
    await control.submitTask({ task: { taskId: "after-cut", requiredCapabilities: ["nobody-has-it"] } });
    await page.locator('tr[data-task="after-cut"]').waitFor();
    await page.close();
  });
});
