import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { createAgent, type BatonAgent } from "../../src/agent/index.js";
import { clientCredentials, createChannel, createClient } from "../../src/rpc/index.js";
import { TcpProxy } from "../harness/tcp-proxy.js";
import { useFixture } from "../helpers/fixture.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { startBaton, type BatonProcess } from "../helpers/process.js";
import { startServer, waitFor, waitForAsync } from "../helpers/server.js";

const fx = useFixture();
const readyz = async (port: number) => {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: await res.text() };
};

describe("BatonServer.drain (in process)", () => {
  it("flips /readyz and health to not serving, tells agents to Drain, places nothing new, and stops once what was in flight has finished", async () => {
    fx.srv = await startServer(fx.pki, { drainGraceMs: 120_000 });
    const { server } = fx.srv;
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const health = createClient(Health, fx.channel(await fx.pki.credentials("operator", "ops")));
    expect(await readyz(server.adminPort)).toEqual({ status: 200, body: "ready\n" });
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    const busy = await fx.agent("busy", { capabilities: ["work"] });
    const drains: string[] = [];
    busy.on("drain", (d) => drains.push(d.reason));
    await busy.connect();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    void busy.run(async () => {
      await held;
      return { ok: true };
    });
    await control.submitTask({ task: { taskId: "long", requiredCapabilities: ["work"] } });
    await waitFor(() => server.coordinator.getTask("long").state === TaskState.RUNNING, 30_000, "long to run");
    const assigned: string[] = [];
    server.coordinator.on("task.updated", (t) => t.state === TaskState.ASSIGNED && assigned.push(t.spec!.taskId));

    const draining = server.drain();
    expect(server.state).toBe("draining");
    const ready = await readyz(server.adminPort);
    expect(ready.status).toBe(503);
    expect(ready.body).toMatch(/draining/);
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
    expect((await health.check({ service: "baton.v1.Control" })).status).toBe(ServingStatus.NOT_SERVING);
    await waitFor(() => drains.length > 0, 30_000, "the agent's Drain");
    // A fresh agent and a new task: accepted (it is journaled), but not placed while draining.
    const fresh = await fx.agent("fresh", { capabilities: ["work"] });
    const freshDrains: string[] = [];
    fresh.on("drain", (d) => freshDrains.push(d.reason));
    await fresh.connect();
    // Connected during the drain, it is told to drain too.
    await waitFor(() => freshDrains.length > 0, 30_000, "the fresh agent's Drain");
    void fresh.run(async () => ({ ok: true }));
    await control.submitTask({ task: { taskId: "late", requiredCapabilities: ["work"] } });
    expect((await control.getTask({ taskId: "late" })).task!.state).toBe(TaskState.PENDING);
    release();
    await draining;
    expect(server.state).toBe("stopped");
    expect(assigned).not.toContain("late");
    expect(fx.srv.logs.lines.some((l) => l.msg === "drained: every directive in flight has finished")).toBe(true);
  });

  it("stops when the grace runs out, forcing, with what is still in flight left to the journal", async () => {
    fx.srv = await startServer(fx.pki, { drainGraceMs: 1500 });
    const { server } = fx.srv;
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const stuck = await fx.agent("stuck", { capabilities: ["work"] });
    await stuck.connect();
    // Never finishes: the drain has to give up on it.
    void stuck.run(() => new Promise(() => {}));
    await control.submitTask({ task: { taskId: "forever", requiredCapabilities: ["work"] } });
    await waitFor(() => server.coordinator.getTask("forever").state === TaskState.RUNNING, 30_000, "forever to run");
    const started = Date.now();
    await server.drain();
    const tookMs = Date.now() - started;
    expect(tookMs).toBeGreaterThanOrEqual(1400);
    // The grace, then closing the calls still open, on a loaded machine.
    expect(tookMs).toBeLessThan(1500 + 10_000);
    expect(server.state).toBe("stopped");
    expect(fx.srv.logs.lines.some((l) => l.msg === "drain grace over with directives in flight: they stay in the journal and are replanned after a restart" && l.in_flight === 1)).toBe(true);
  });
});

describe("SIGTERM under load (baton serve as a child process)", () => {
  let pki: TestPki;
  let dir: string;
  const procs: BatonProcess[] = [];
  const closers: Array<() => unknown> = [];
  const DRAIN_GRACE_MS = 20_000;

  beforeAll(async () => {
    pki = await makePki();
    dir = mkdtempSync(join(tmpdir(), "baton-drain-"));
    const op = await pki.issue("operator", "operator");
    for (const [name, content] of Object.entries({ "ca.pem": pki.ca.certPem, "coordinator.pem": pki.server.certPem, "coordinator.key": pki.server.keyPem, "operator.pem": op.certPem, "operator.key": op.keyPem, "journal.key": `${randomBytes(32).toString("base64")}\n` })) {
      writeFileSync(join(dir, name), content, { mode: 0o600 });
    }
    writeFileSync(
      join(dir, "baton.json"),
      JSON.stringify({
        listen: "127.0.0.1:0",
        adminListen: "127.0.0.1:0",
        tls: { certsDir: dir },
        drainGraceMs: DRAIN_GRACE_MS,
        session: { heartbeatIntervalMs: 200, heartbeatMisses: 10, ackTimeoutMs: 2000, disconnectGraceMs: 10_000 },
        store: { kind: "sqlite", dataDir: join(dir, "data") },
      }),
    );
  });
  afterAll(() => {
    pki?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
    for (const p of procs.splice(0)) await p.stop("SIGKILL");
  });

  async function coordinator(): Promise<{ proc: BatonProcess; port: number; adminPort: number }> {
    const proc = startBaton(["serve", "--config", join(dir, "baton.json")]);
    procs.push(proc);
    const admin = await proc.waitForLine((l) => l.msg === "admin endpoint serving /metrics", 90_000);
    const line = await proc.waitForLine((l) => l.msg === "baton serving", 90_000);
    return { proc, port: Number(String(line.listen).split(":").pop()), adminPort: Number(String(admin.admin).split(":").pop()) };
  }
  const pem = (name: string) => readFileSync(join(dir, name), "utf8");
  const operator = (port: number) => {
    const ch = createChannel(`localhost:${port}`, clientCredentials({ ca: pki.ca.certPem, cert: pem("operator.pem"), key: pem("operator.key") }));
    closers.push(() => ch.close());
    return createClient(Control, ch);
  };

  it("stops placing, lets in-flight directives finish, exits 0 within the grace, /readyz 503 meanwhile; after a restart every accepted task completes, none twice", async () => {
    let c = await coordinator();
    const proxy = new TcpProxy({ target: { host: "127.0.0.1", port: c.port } });
    await proxy.start();
    closers.push(() => proxy.stop());
    const runs = new Map<string, number>();
    const drainedAt = new Map<string, number>();
    // When each directive run before the restart was issued (its timestamp): none after the drain began.
    const issuedAt = new Map<string, number>();
    let restarted = false;
    // The agents run in this process: once `holding`, a handler does not finish until the test opens
    // the gate (after it has seen /readyz 503), so the drain is still waiting on in-flight work then,
    // however slowly the machine polls.
    let holding = false;
    let held = 0;
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    closers.push(() => openGate());
    const agents: BatonAgent[] = [];
    for (const id of ["w1", "w2", "w3"]) {
      const agent = createAgent({ address: `localhost:${proxy.port}`, agentId: id, credentials: await pki.credentials("managed_agent", id), capabilities: ["work"], maxInFlight: 4, reconnectInitialMs: 50, reconnectMaxMs: 300 });
      closers.push(() => agent.close({ flushMs: 200 }));
      agent.on("drain", () => drainedAt.set(id, Date.now()));
      await agent.connect();
      void agent.run(async (d) => {
        if (!restarted) issuedAt.set(d.directiveId, timestampMs(d.timestamp!));
        const taskId = d.parameters?.kind.case === "assignTask" ? d.parameters.kind.value.taskId : "";
        runs.set(taskId, (runs.get(taskId) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 300));
        if (holding) {
          held++;
          await gate;
        }
        return { ok: true };
      });
      agents.push(agent);
    }
    let control = operator(c.port);
    const ids = Array.from({ length: 60 }, (_, i) => `load-${i}`);
    const { results } = await control.submitTasks({ tasks: ids.map((taskId) => ({ taskId, requiredCapabilities: ["work"] })) });
    expect(results.every((r) => r.code === 0)).toBe(true);
    const succeeded = async () => (await control.listTasks({ pageSize: 100, states: [TaskState.SUCCEEDED] })).tasks.length;
    await waitForAsync(async () => (await succeeded()) >= 6, 60_000, "some tasks to succeed");
    expect((await readyz(c.adminPort)).status).toBe(200);
    // At least one directive in flight and held: the drain cannot end before the test has looked.
    holding = true;
    await waitFor(() => held > 0, 60_000, "a directive held in flight by the test's gate");

    const sent = Date.now();
    c.proc.child.kill("SIGTERM");
    // While it drains, /readyz says so (held handlers keep directives in flight until the gate opens).
    let sawNotReady = false;
    while (c.proc.child.exitCode === null && !sawNotReady) {
      const r = await readyz(c.adminPort).catch(() => undefined);
      if (r?.status === 503) sawNotReady = /draining/.test(r.body);
      if (!r) break;
    }
    expect(sawNotReady).toBe(true);
    openGate();
    // Waited for, not signalled again: a second signal forces an exit (code 1).
    const code = c.proc.child.exitCode ?? ((await once(c.proc.child, "exit")) as [number | null])[0];
    const tookMs = Date.now() - sent;
    expect(code).toBe(0);
    expect(tookMs).toBeLessThan(DRAIN_GRACE_MS);
    expect(c.proc.lines.some((l) => l.msg === "drained: every directive in flight has finished")).toBe(true);
    expect(drainedAt.size).toBe(3);
    // Nothing new was placed once the drain began. (When a handler ran says nothing: the
    // SDK hands a directive to the handler after it has read the frames that came with it,
    // a Drain among them.)
    const drainBegan = Date.parse(String(c.proc.lines.find((l) => String(l.msg).startsWith("draining: no new work"))!.timestamp));
    expect([...issuedAt].filter(([, at]) => at > drainBegan)).toEqual([]);
    const before = new Set([...runs.keys()]);
    expect(before.size).toBeLessThan(ids.length);

    // A restart on the same journal: the agents come back, and what was left runs.
    restarted = true;
    c = await coordinator();
    proxy.retarget({ host: "127.0.0.1", port: c.port });
    proxy.cut();
    control = operator(c.port);
    await waitForAsync(async () => (await succeeded()) === ids.length, 90_000, "every accepted task to succeed after the restart");
    const { tasks } = await control.listTasks({ pageSize: 100 });
    expect(tasks.map((t) => t.spec!.taskId).sort()).toEqual([...ids].sort());
    // Drained cleanly, no task ran twice: what finished before the stop was not run again.
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
  });
});
