import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { createAgent, type BatonAgent } from "../../src/agent/index.js";
import { clientCredentials, createChannel, createClient, type Channel } from "../../src/rpc/index.js";
import { TcpProxy } from "../harness/tcp-proxy.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { startBaton, type BatonProcess } from "../helpers/process.js";

let pki: TestPki;
let dir: string;
const procs: BatonProcess[] = [];
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  pki = await makePki();
  dir = mkdtempSync(join(tmpdir(), "baton-restart-"));
  const op = await pki.issue("operator", "operator");
  for (const [name, content] of Object.entries({ "ca.pem": pki.ca.certPem, "coordinator.pem": pki.server.certPem, "coordinator.key": pki.server.keyPem, "operator.pem": op.certPem, "operator.key": op.keyPem, "journal.key": `${randomBytes(32).toString("base64")}\n` })) {
    writeFileSync(join(dir, name), content, { mode: 0o600 });
  }
  writeFileSync(
    join(dir, "baton.json"),
    JSON.stringify({
      listen: "127.0.0.1:0",
      adminListen: "",
      tls: { certsDir: dir },
      // Generous misses: on a loaded CI machine a 600 ms stall would close the session, which this test is not about.
      session: { heartbeatIntervalMs: 200, heartbeatMisses: 10, ackTimeoutMs: 500, disconnectGraceMs: 10_000 },
      delivery: { backoffInitialMs: 50, backoffMaxMs: 200, leaseMs: 5000 },
      store: { kind: "sqlite", dataDir: join(dir, "data") },
    }),
  );
});
afterAll(() => {
  pki.cleanup();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  for (const p of procs.splice(0)) await p.stop("SIGKILL");
});

async function coordinator(): Promise<{ proc: BatonProcess; port: number }> {
  const proc = startBaton(["serve", "--config", join(dir, "baton.json")]);
  procs.push(proc);
  const line = await proc.waitForLine((l) => l.msg === "baton serving");
  return { proc, port: Number(String(line.listen).split(":").pop()) };
}

describe("durability", () => {
  it("after kill -9 and a restart on the same data, every accepted task completes and the agent resumes its session", async () => {
    let c = await coordinator();
    const proxy = new TcpProxy({ target: { host: "127.0.0.1", port: c.port } });
    await proxy.start();
    closers.push(() => proxy.stop());
    const effects = new Map<string, number>();
    const agent: BatonAgent = createAgent({ address: `localhost:${proxy.port}`, agentId: "a1", credentials: await pki.credentials("managed_agent", "a1"), capabilities: ["work"], maxInFlight: 4, reconnectInitialMs: 50, reconnectMaxMs: 300 });
    closers.push(() => agent.close({ flushMs: 200 }));
    const welcomes: boolean[] = [];
    agent.on("welcome", (w) => welcomes.push(w.resumed));
    await agent.connect();
    // Handlers hold at the gate until the coordinator has been restarted: at any machine speed work is still out when it is killed.
    let running = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    closers.push(() => release());
    void agent.run(async (d, ctx) => {
      effects.set(d.directiveId, (effects.get(d.directiveId) ?? 0) + 1);
      running++;
      await gate;
      ctx.progress(50);
      return { ok: true };
    });
    const operator = () => {
      const ch: Channel = createChannel(`localhost:${c.port}`, clientCredentials({ ca: pki.ca.certPem, cert: readPem("operator.pem"), key: readPem("operator.key") }));
      closers.push(() => ch.close());
      return createClient(Control, ch);
    };
    let control = operator();
    const submitted = await control.submitTasks({ tasks: Array.from({ length: 30 }, (_, i) => ({ taskId: `t${i}`, requiredCapabilities: ["work"] })) });
    expect(submitted.results.map((r) => r.code)).toEqual(Array.from({ length: 30 }, () => 0));
    // Kill the coordinator while tasks are pending and running: the agent's cap (4) is running, the rest wait.
    const deadlineRunning = Date.now() + 20_000;
    while (running < 4) {
      if (Date.now() > deadlineRunning) throw new Error(`timed out waiting for 4 handlers running, ${running} are`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await control.listTasks({ pageSize: 100, states: [TaskState.SUCCEEDED] })).tasks).toHaveLength(0);
    expect((await control.listTasks({ pageSize: 100, states: [TaskState.PENDING] })).tasks).toHaveLength(26);
    await c.proc.stop("SIGKILL");
    c = await coordinator();
    proxy.retarget({ host: "127.0.0.1", port: c.port });
    proxy.cut();
    release();
    control = operator();
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { tasks } = await control.listTasks({ pageSize: 100 });
      expect(tasks).toHaveLength(30);
      if (tasks.every((t) => t.state === TaskState.SUCCEEDED)) break;
      if (Date.now() > deadline) throw new Error(`not all done: ${tasks.map((t) => TaskState[t.state]).join(",")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(welcomes[0]).toBe(false);
    // The agent's session survived the restart: it reconnected and resumed it.
    const until = Date.now() + 10_000;
    while (welcomes.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(welcomes.slice(1)).toContain(true);
    expect([...effects.values()].every((n) => n === 1)).toBe(true);
  });
});


function readPem(name: string): string {
  return readFileSync(join(dir, name), "utf8");
}
