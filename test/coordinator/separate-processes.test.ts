import { timestampNow } from "@bufbuild/protobuf/wkt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { PerformanceMonitor } from "../../gen/baton/v1/performance_monitor_pb.js";
import { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { createAgent, type BatonAgent } from "../../src/agent/index.js";
import { buildConfig } from "../../src/config.js";
import { createLogger } from "../../src/logging.js";
import { clientCredentials, createChannel, createClient, serverCredentials, type Channel } from "../../src/rpc/index.js";
import { BatonServer } from "../../src/server/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { startBaton, type BatonProcess } from "../helpers/process.js";
import { LogCapture } from "../helpers/server.js";

let pki: TestPki;
let dir: string;
const procs: BatonProcess[] = [];
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  pki = await makePki();
  // Each participant on a certificate of its own role: a coordinator's is refused by --only resource-manager/performance-monitor.
  const rm = await pki.issue("resource_manager", "rm-1");
  const pm = await pki.issue("performance_monitor", "pm-1");
  dir = pki.writeFiles({ "ca.pem": pki.ca.certPem, "coordinator.pem": pki.server.certPem, "coordinator.key": pki.server.keyPem, "rm-1.pem": rm.certPem, "rm-1.key": rm.keyPem, "pm-1.pem": pm.certPem, "pm-1.key": pm.keyPem });
});
afterAll(() => pki.cleanup());
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  for (const p of procs.splice(0)) await p.stop("SIGKILL");
});

async function participant(only: string): Promise<{ proc: BatonProcess; port: number }> {
  const name = only === "resource-manager" ? "rm-1" : "pm-1";
  const proc = startBaton(["serve", "--only", only, "--listen", "127.0.0.1:0", "--certs-dir", dir], { env: { BATON_TLS_CERT: `${dir}/${name}.pem`, BATON_TLS_KEY: `${dir}/${name}.key` } });
  procs.push(proc);
  const line = await proc.waitForLine((l) => l.msg === "baton serving");
  return { proc, port: Number(String(line.listen).split(":").pop()) };
}

describe("Resource Manager and Performance Monitor as their own processes", () => {
  it("the coordinator reaches them over mTLS through named breakers, and keeps working when the monitor dies", async () => {
    const rm = await participant("resource-manager");
    const pm = await participant("performance-monitor");
    expect(rm.proc.lines.find((l) => l.msg === "baton serving")!.serves).toEqual(["baton.v1.ResourceManager", "grpc.health.v1.Health"]);
    const config = buildConfig({
      listen: "127.0.0.1:0",
      adminListen: "",
      store: { kind: "memory" },
      tasks: { retryDelayMs: 10 },
      services: { only: "coordinator", resourceManager: `localhost:${rm.port}`, performanceMonitor: `localhost:${pm.port}` },
    });
    const logs = new LogCapture();
    const server = new BatonServer({ config, logger: createLogger({ level: "debug", destination: logs }), clientTls: { ca: pki.ca.certPem, cert: pki.server.certPem, key: pki.server.keyPem } });
    const port = await server.start(serverCredentials({ ca: pki.ca.certPem, cert: pki.server.certPem, key: pki.server.keyPem }));
    closers.push(() => server.shutdown({ graceMs: 500 }));
    const agent: BatonAgent = createAgent({ address: `localhost:${port}`, agentId: "a1", credentials: await pki.credentials("managed_agent", "a1"), capabilities: ["work"], resources: [{ resourceId: "gpu-0", kind: "gpu", capacity: 1 }] });
    closers.push(() => agent.close({ flushMs: 100 }));
    await agent.connect();
    void agent.run(async (_d, ctx) => {
      ctx.progress(50);
      await new Promise((r) => setTimeout(r, 30));
      return {};
    });
    const ops = await pki.credentials("operator", "ops");
    const ch: Channel = createChannel(`localhost:${port}`, ops);
    closers.push(() => ch.close());
    const control = createClient(Control, ch);
    const rmCh = createChannel(`localhost:${rm.port}`, clientCredentials({ ca: pki.ca.certPem, cert: pki.server.certPem, key: pki.server.keyPem }));
    const pmCh = createChannel(`localhost:${pm.port}`, clientCredentials({ ca: pki.ca.certPem, cert: pki.server.certPem, key: pki.server.keyPem }));
    closers.push(() => rmCh.close(), () => pmCh.close());
    const rmClient = createClient(ResourceManager, rmCh);
    const pmClient = createClient(PerformanceMonitor, pmCh);

    // The agent's inventory went to the Resource Manager process.
    const inventory = await rmClient.query({ requestId: "550e8400-e29b-41d4-a716-446655440000", timestamp: timestampNow() });
    expect(inventory.resources.map((r) => [r.agentId, r.resource!.resourceId])).toEqual([["a1", "gpu-0"]]);

    for (const id of ["t1", "t2", "t3"]) await control.submitTask({ task: { taskId: id, requiredCapabilities: ["work"], resources: [{ kind: "gpu", amount: 1 }] } });
    const done = () => Promise.all(["t1", "t2", "t3"].map((id) => control.getTask({ taskId: id }))).then((r) => r.every((x) => x.task!.state === TaskState.SUCCEEDED));
    const deadline = Date.now() + 10_000;
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error("tasks did not finish");
      await new Promise((r) => setTimeout(r, 50));
    }
    // Reservations were made and released in the RM process; the PM process got the reports.
    const after = await rmClient.query({ requestId: "550e8400-e29b-41d4-a716-446655440001", timestamp: timestampNow() });
    expect(after.resources[0]).toMatchObject({ reserved: 0 });
    const metrics = await pmClient.getMetrics({ requestId: "550e8400-e29b-41d4-a716-446655440002", timestamp: timestampNow() });
    expect(metrics.rounds!.completed).toBeGreaterThan(0n);
    // Progress reaches the monitor off the hot path, coalesced once a second.
    const pmMetrics = () => pmClient.getMetrics({ requestId: crypto.randomUUID(), timestamp: timestampNow() });
    const deadlineProgress = Date.now() + 20_000;
    while (!(await pmMetrics()).agents.some((a) => a.agentId === "a1")) {
      if (Date.now() > deadlineProgress) throw new Error("the monitor never heard of agent a1's progress");
      await new Promise((r) => setTimeout(r, 50));
    }

    // The monitor dies: the coordinator goes on without it, and once enough of its reports
    // have failed (the synced view means rounds no longer ask it for figures; only reports
    // go to it), its breaker opens.
    await pm.proc.stop("SIGKILL");
    const opened = () => logs.lines.some((l) => l.msg === "breaker open: calls fail fast" && l.breaker === "performance-monitor");
    let submitted = 0;
    for (const deadline = Date.now() + 30_000; !opened() && submitted < 200 && Date.now() < deadline; submitted++) {
      await control.submitTask({ task: { taskId: `u${submitted}`, requiredCapabilities: ["work"] } });
    }
    const deadline2 = Date.now() + 20_000;
    for (;;) {
      const { tasks } = await control.listTasks({ pageSize: 1000 });
      const mine = tasks.filter((t) => t.spec!.taskId.startsWith("u"));
      if (mine.length === submitted && mine.every((t) => t.state === TaskState.SUCCEEDED)) break;
      if (Date.now() > deadline2) throw new Error("tasks did not finish without the monitor");
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(opened()).toBe(true);
  });
});
