import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { clientCredentials, createChannel, createClient } from "../../src/rpc/index.js";
import { createCertificateAuthority, issueCertificate, revokeCertificate } from "../../src/security/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { freePort, ROOT, startBaton, TSX, type BatonProcess } from "../helpers/process.js";

// The agent of examples/agent.ts as its own process, with nothing else in it to keep its
// event loop alive: what an operator runs, unlike an SDK agent inside a test process.

let pki: TestPki;
const dirs: string[] = [];
const coordinators: BatonProcess[] = [];
const agents: ExampleAgent[] = [];
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => {
  pki.cleanup();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  for (const a of agents.splice(0)) await a.stop();
  for (const p of coordinators.splice(0)) await p.stop("SIGKILL");
});

/** A certificates directory as `baton certs` lays it out, and a coordinator config on a fixed port. */
async function setUp(agentId: string): Promise<{ dir: string; config: string; port: number; address: string }> {
  const dir = mkdtempSync(join(tmpdir(), "baton-lone-agent-"));
  dirs.push(dir);
  const [op, agent] = await Promise.all([pki.issue("operator", "operator"), pki.issue("managed_agent", agentId)]);
  const files = {
    "ca.pem": pki.ca.certPem,
    "coordinator.pem": pki.server.certPem,
    "coordinator.key": pki.server.keyPem,
    // The journal key, where the coordinator looks by default (<certsDir>/journal.key).
    "journal.key": `${randomBytes(32).toString("base64")}\n`,
    "operator.pem": op.certPem,
    "operator.key": op.keyPem,
    [`${agentId}.pem`]: agent.certPem,
    [`${agentId}.key`]: agent.keyPem,
  };
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content, { mode: 0o600 });
  const port = await freePort();
  const config = join(dir, "baton.json");
  writeFileSync(
    config,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      adminListen: "",
      tls: { certsDir: dir, trustDomain: pki.trustDomain },
      // A grace long enough for a restart on a loaded machine: the session must still be there to resume.
      session: { heartbeatIntervalMs: 500, heartbeatMisses: 10, disconnectGraceMs: 60_000 },
      store: { kind: "sqlite", dataDir: join(dir, "data") },
    }),
  );
  return { dir, config, port, address: `localhost:${port}` };
}

// The journal seals tasks' sensitive input with a key; a fixed one, for test data only.
const JOURNAL_KEY = Buffer.alloc(32, 0x17).toString("base64");

async function startCoordinator(config: string): Promise<BatonProcess> {
  const proc = startBaton(["serve", "--config", config], { env: { BATON_JOURNAL_KEY: JOURNAL_KEY } });
  coordinators.push(proc);
  await proc.waitForLine((l) => l.msg === "baton serving", 60_000);
  return proc;
}

interface ExampleAgent {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when stdout (from `from` on) matches; rejects if the agent exits first. */
  waitForOutput(pattern: RegExp, what: string, from?: number, timeoutMs?: number): Promise<RegExpExecArray>;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** Starts `node --import tsx examples/agent.ts <agentId>` against `address` with certificates from `certsDir`. */
function startExample(agentId: string, certsDir: string, address: string): ExampleAgent {
  const child = spawn(process.execPath, ["--import", TSX, `${ROOT}examples/agent.ts`, agentId], {
    cwd: ROOT,
    env: { ...process.env, BATON_CERTS_DIR: certsDir, BATON_ADDRESS: address },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const listeners = new Set<() => void>();
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  });
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = once(child, "exit").then(([code]) => code as number | null);
  const agent: ExampleAgent = {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForOutput(pattern, what, from = 0, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const done = () => {
          listeners.delete(check);
          clearTimeout(timer);
        };
        const check = () => {
          const m = pattern.exec(out.slice(from));
          if (m) {
            done();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`the agent did not print ${what} within ${timeoutMs} ms; stdout: ${out}; stderr: ${err}`));
        }, timeoutMs);
        listeners.add(check);
        void exited.then((code) => {
          check();
          done();
          reject(new Error(`the agent exited with code ${code} before it printed ${what}; stdout: ${out}; stderr: ${err}`));
        });
        check();
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
  agents.push(agent);
  return agent;
}

/** A Control client with the operator certificate (a fresh channel after each coordinator restart). */
function operator(dir: string, address: string) {
  const channel = createChannel(address, clientCredentials({ ca: readFileSync(join(dir, "ca.pem")), cert: readFileSync(join(dir, "operator.pem")), key: readFileSync(join(dir, "operator.key")) }));
  closers.push(() => channel.close());
  return createClient(Control, channel);
}

/** Submits a task the example can run. */
async function submit(control: ReturnType<typeof operator>, taskId: string, input: Record<string, number> = {}): Promise<void> {
  await control.submitTask({ task: { taskId, requiredCapabilities: ["summarize"], input } });
}

/** Resolves when the task has succeeded. */
async function succeeded(control: ReturnType<typeof operator>, taskId: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { task } = await control.getTask({ taskId });
    if (task?.state === TaskState.SUCCEEDED) return;
    if (Date.now() > deadline) throw new Error(`task ${taskId} is ${TaskState[task?.state ?? 0]} after 60 s, not succeeded`);
    // Polling the coordinator's answer, not waiting for time to pass.
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("the example agent, alone in its process", () => {
  it("outlives a SIGTERM and a SIGKILL of the coordinator, resumes its session each time, and runs the next task", async () => {
    const { dir, config, address } = await setUp("task_executor_1");
    let coordinator = await startCoordinator(config);
    const agent = startExample("task_executor_1", dir, address);
    await agent.waitForOutput(/connected as task_executor_1: session (\S+)/, "that it connected");
    const control = operator(dir, address);
    await submit(control, "before-restarts");
    await agent.waitForOutput(/directive \S+: assignTask before-restarts/, "the first task's directive");
    await succeeded(control, "before-restarts");

    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      const mark = agent.stdout().length;
      // Work out when the coordinator goes: its session is what the restarted coordinator keeps for it.
      await submit(control, `during-${signal}`, { work_seconds: 2 });
      await agent.waitForOutput(new RegExp(`directive \\S+: assignTask during-${signal}`), `the directive of the task running at the ${signal}`, mark);
      await coordinator.stop(signal);
      await agent.waitForOutput(/lost the coordinator .*; reconnecting/, `that it lost the coordinator after its ${signal}`, mark);
      // The coordinator is gone: the agent must still be alive and retrying, not exited.
      expect(agent.child.exitCode).toBeNull();
      coordinator = await startCoordinator(config);
      await agent.waitForOutput(/reconnected as task_executor_1: session \S+ resumed/, `that it resumed after the coordinator's ${signal} and restart`, mark);
      const next = operator(dir, address);
      // The completion of the task that ran across the restart was kept and resent.
      await succeeded(next, `during-${signal}`);
      await submit(next, `after-${signal}`);
      await agent.waitForOutput(new RegExp(`directive \\S+: assignTask after-${signal}`), `the directive of the task submitted after the ${signal}`, mark);
      await succeeded(next, `after-${signal}`);
    }
    expect(agent.child.exitCode).toBeNull();
    expect(agent.stderr()).toBe("");
    // Stopped by its operator, it closes its session cleanly and exits 0.
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    expect(agent.stdout()).toMatch(/session ended: closed by the agent/);
  }, 300_000);

  it("waits for a coordinator that is not up yet, then connects and runs a task", async () => {
    const { dir, config, address } = await setUp("task_executor_2");
    const agent = startExample("task_executor_2", dir, address);
    await agent.waitForOutput(/waiting for the coordinator at localhost:\d+/, "that it is waiting for the coordinator");
    await startCoordinator(config);
    await agent.waitForOutput(/connected as task_executor_2: session \S+/, "that it connected once the coordinator was up");
    const control = operator(dir, address);
    await submit(control, "first-task");
    await agent.waitForOutput(/directive \S+: assignTask first-task/, "the task's directive");
    await succeeded(control, "first-task");
    expect(agent.child.exitCode).toBeNull();
  }, 180_000);
});

describe("the example agent refused for good", () => {
  let env: Awaited<ReturnType<typeof setUp>>;
  let foreignCa: Awaited<ReturnType<typeof createCertificateAuthority>>;
  beforeAll(async () => {
    env = await setUp("task_executor_3");
    foreignCa = await createCertificateAuthority({ trustDomain: pki.trustDomain });
    const revoked = await pki.issue("managed_agent", "revoked_agent_4");
    revokeCertificate(join(env.dir, "revoked.json"), { serial: revoked.serial, spiffeId: `spiffe://${pki.trustDomain}/managed_agent/revoked_agent_4`, reason: "key compromise" });
    const leaves = {
      // Another agent's certificate, under this agent's file name.
      impostor_5: await pki.issue("managed_agent", "someone_else_6"),
      revoked_agent_4: revoked,
      expired_agent_7: await pki.issue("managed_agent", "expired_agent_7", { notBefore: new Date(Date.now() - 2 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) }),
      foreign_agent_8: await issueCertificate({ ca: foreignCa, trustDomain: pki.trustDomain, role: "managed_agent", name: "foreign_agent_8" }),
    };
    for (const [name, leaf] of Object.entries(leaves)) {
      writeFileSync(join(env.dir, `${name}.pem`), leaf.certPem, { mode: 0o600 });
      writeFileSync(join(env.dir, `${name}.key`), leaf.keyPem, { mode: 0o600 });
    }
  });

  it.each([
    ["another agent's certificate", "impostor_5", /PERMISSION_DENIED.*may not connect as agent "impostor_5"/],
    ["a revoked certificate", "revoked_agent_4", /UNAUTHENTICATED.*revoked/],
    ["an expired certificate", "expired_agent_7", /UNAUTHENTICATED.*expired/],
    ["a certificate from a CA the coordinator does not trust", "foreign_agent_8", /UNAUTHENTICATED.*not issued by/],
  ])("exits non-zero with the reason on stderr when it connects with %s", async (_what, agentId, reason) => {
    if (!coordinators.some((c) => c.child.exitCode === null)) await startCoordinator(env.config);
    const agent = startExample(agentId, env.dir, env.address);
    const code = await agent.exited;
    expect(code, `stdout: ${agent.stdout()}; stderr: ${agent.stderr()}`).toBe(1);
    expect(agent.stderr()).toMatch(reason);
    // The reason, not a stack trace.
    expect(agent.stderr()).not.toMatch(/\n\s+at /);
  }, 120_000);
});
