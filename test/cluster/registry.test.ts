// A coordinator on etcd that finds its Resource Manager and Performance Monitor in the
// service registry (`--resource-manager registry --performance-monitor registry`), with
// each of them a `baton serve --only …` process registered on a lease of its own.
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Etcd3 } from "etcd3";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { createAgent, type BatonAgent } from "../../src/agent/index.js";
import { etcdServiceRegistry, type ServiceKind } from "../../src/cluster/index.js";
import { Code, toBatonError } from "../../src/errors.js";
import { clientCredentials, createChannel, createClient, type Channel, type ServiceClient } from "../../src/rpc/index.js";
import { ensureDevelopmentCertificates, issueToDirectory } from "../../src/security/index.js";
import { createJournalKeyFile } from "../../src/store/index.js";
import { startBaton, type BatonProcess } from "../helpers/process.js";
import { startEtcd, type EtcdCluster } from "./etcd.js";

const PREFIX = "reg/";
const TRUST_DOMAIN = "baton.local";
const WAIT_MS = 60_000;
const LEADING = "leading: journal loaded from etcd; serving agents and Control";

let etcd: EtcdCluster;
let client: Etcd3;
let work: string;
let certs: string;
let configFile: string;
const procs: BatonProcess[] = [];
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
  work = mkdtempSync(join(tmpdir(), "baton-registry-"));
  certs = join(work, "certs");
  await ensureDevelopmentCertificates({ dir: certs, trustDomain: TRUST_DOMAIN });
  createJournalKeyFile(join(certs, "journal.key"));
  await issueToDirectory({ dir: certs, trustDomain: TRUST_DOMAIN, role: "managed_agent", name: "a1" });
  // The RM and PM on certificates of their own roles: --only refuses the coordinator's.
  await issueToDirectory({ dir: certs, trustDomain: TRUST_DOMAIN, role: "resource_manager", name: "rm-1" });
  await issueToDirectory({ dir: certs, trustDomain: TRUST_DOMAIN, role: "performance_monitor", name: "pm-1" });
  configFile = join(work, "baton.json");
  // Short leases, so a SIGKILLed process drops out of the registry within seconds.
  writeFileSync(configFile, JSON.stringify({ listen: "127.0.0.1:0", adminListen: "", tls: { certsDir: certs, trustDomain: TRUST_DOMAIN }, cluster: { leaseTtlSeconds: 2, recheckMs: 250 }, tasks: { retryDelayMs: 50 } }));
}, 120_000);
afterAll(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await Promise.all(procs.map((p) => p.stop("SIGKILL")));
  client?.close();
  await etcd?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** `baton serve <args>` on the test's etcd (under `prefix`: a cluster of its own); resolves once it serves, with its address. */
async function serve(args: string[], prefix = PREFIX): Promise<{ proc: BatonProcess; address: string }> {
  const proc = startBaton(["serve", "--config", configFile, "--store", `etcd://${etcd.endpoints[0]}/${prefix}`, "--log-level", "info", ...args], { cwd: work, env: ownCertificate(args) });
  procs.push(proc);
  const line = await proc.waitForLine((l) => l.msg === "baton serving", WAIT_MS);
  return { proc, address: `localhost:${String(line.listen).split(":").at(-1)}` };
}

/** BATON_TLS_CERT/KEY naming the certificate of the participant `--only` runs (the coordinator's by default). */
function ownCertificate(args: string[]): NodeJS.ProcessEnv {
  const only = args[args.indexOf("--only") + 1];
  const name = only === "resource-manager" ? "rm-1" : only === "performance-monitor" ? "pm-1" : undefined;
  return name ? { BATON_TLS_CERT: join(certs, `${name}.pem`), BATON_TLS_KEY: join(certs, `${name}.key`) } : {};
}

/** Agent a1, offering one GPU, connected to `address` (closed after the tests). */
async function connectGpuAgent(address: string): Promise<BatonAgent> {
  const agent = createAgent({
    address,
    agentId: "a1",
    credentials: clientCredentials({ ca: readFileSync(join(certs, "ca.pem")), cert: readFileSync(join(certs, "a1.pem")), key: readFileSync(join(certs, "a1.key")) }),
    capabilities: ["work"],
    resources: [{ resourceId: "gpu-0", kind: "gpu", capacity: 1 }],
  });
  closers.push(() => agent.close({ flushMs: 100 }));
  await agent.connect();
  return agent;
}

/** Its id in the registry, as it logged it. */
async function registeredId(proc: BatonProcess): Promise<string> {
  return String((await proc.waitForLine((l) => l.msg === "registered in etcd", WAIT_MS)).id);
}

const tls = () => ({ ca: readFileSync(join(certs, "ca.pem")), cert: readFileSync(join(certs, "operator.pem")), key: readFileSync(join(certs, "operator.key")) });

/** An operator's channel to `address` (closed after the tests). */
function connect(address: string): Channel {
  const ch = createChannel(address, clientCredentials(tls()));
  closers.push(() => ch.close());
  return ch;
}
const registry = (prefix = PREFIX) => etcdServiceRegistry(client, { prefix, leaderKey: `${prefix}leader`, leaseId: () => Promise.reject(new Error("the test registers nothing")) });
const ids = async (kind: ServiceKind, prefix = PREFIX) => (await registry(prefix).lookup(kind)).map((e) => e.id).sort();

async function succeeded(control: ServiceClient<typeof Control>, taskId: string): Promise<void> {
  await expect.poll(async () => (await control.getTask({ taskId })).task!.state, { timeout: WAIT_MS, interval: 100 }).toBe(TaskState.SUCCEEDED);
}

describe("the Resource Manager and Performance Monitor found in the service registry", () => {
  it("registers each on its lease, serves a task on the RM's inventory, and moves to a new RM when the first dies", { timeout: 400_000 }, async () => {
    const rm1 = await serve(["--only", "resource-manager"]);
    const pm = await serve(["--only", "performance-monitor"]);
    const rm1Id = await registeredId(rm1.proc);
    const pmId = await registeredId(pm.proc);
    const coordinator = await serve(["--only", "coordinator", "--resource-manager", "registry", "--performance-monitor", "registry"]);
    await coordinator.proc.waitForLine((l) => l.msg === LEADING, WAIT_MS);
    const coordinatorId = await registeredId(coordinator.proc);
    // All three kinds are listed, each once: the coordinator no longer claims the RM and PM.
    expect(await ids("coordinator")).toEqual([coordinatorId]);
    expect(await ids("resource_manager")).toEqual([rm1Id]);
    expect(await ids("performance_monitor")).toEqual([pmId]);
    expect((await registry().lookup("resource_manager"))[0]!.address).toBe(rm1.address);
    expect(await registry().leader()).toBe(coordinator.address);
    await coordinator.proc.waitForLine((l) => l.msg === "resource manager found in the service registry" && l.id === rm1Id, WAIT_MS);
    await coordinator.proc.waitForLine((l) => l.msg === "performance monitor found in the service registry" && l.id === pmId, WAIT_MS);

    const agent = await connectGpuAgent(coordinator.address);
    void agent.run(async () => ({}));
    const control = createClient(Control, connect(coordinator.address));
    const inventory = async (address: string) => (await createClient(ResourceManager, connect(address)).query({ requestId: crypto.randomUUID(), timestamp: timestampNow() })).resources.map((r) => [r.agentId, r.resource!.resourceId]);

    // A task that needs a GPU: placed only through the RM's inventory.
    await control.submitTask({ task: { taskId: "t1", requiredCapabilities: ["work"], resources: [{ kind: "gpu", amount: 1 }] } });
    await succeeded(control, "t1");
    expect(await inventory(rm1.address)).toEqual([["a1", "gpu-0"]]);

    // The RM dies: its entry goes with its lease, and the coordinator has none to call.
    await rm1.proc.stop("SIGKILL");
    await expect.poll(() => ids("resource_manager"), { timeout: WAIT_MS, interval: 100 }).toEqual([]);
    await coordinator.proc.waitForLine((l) => l.msg === "no resource manager is registered: calls to it fail until one registers", WAIT_MS);
    // ExplainTask asks the RM for a task with resources: the call fails saying why.
    const refused = await control.explainTask({ taskId: "t1" }).then(() => undefined, (err: unknown) => toBatonError(err));
    expect(refused?.code).toBe(Code.UNAVAILABLE);
    expect(refused?.message).toMatch(`no resource manager is registered in etcd under ${PREFIX}services/resource_manager/`);

    // A second RM registers; the coordinator moves to it and sends it the agent's inventory.
    const rm2 = await serve(["--only", "resource-manager"]);
    const rm2Id = await registeredId(rm2.proc);
    expect(rm2Id).not.toBe(rm1Id);
    await coordinator.proc.waitForLine((l) => l.msg === "resource manager found in the service registry" && l.id === rm2Id, WAIT_MS);
    await control.submitTask({ task: { taskId: "t2", requiredCapabilities: ["work"], resources: [{ kind: "gpu", amount: 1 }] } });
    await succeeded(control, "t2");
    expect(await inventory(rm2.address)).toEqual([["a1", "gpu-0"]]);
    expect(await ids("resource_manager")).toEqual([rm2Id]);
  });

  it("a GPU held across a change of RM: the breaker the dead RM opened is reset at the switch, the new RM holds the reservation, and a task needing the GPU waits for its release", { timeout: 400_000 }, async () => {
    const prefix = "reg-held/";
    const rm1 = await serve(["--only", "resource-manager"], prefix);
    await serve(["--only", "performance-monitor"], prefix);
    const rm1Id = await registeredId(rm1.proc);
    const coordinator = await serve(["--only", "coordinator", "--resource-manager", "registry", "--performance-monitor", "registry"], prefix);
    await coordinator.proc.waitForLine((l) => l.msg === LEADING, WAIT_MS);
    const found = (id: string) => (l: Record<string, unknown>) => l.msg === "resource manager found in the service registry" && l.id === id;
    await coordinator.proc.waitForLine(found(rm1Id), WAIT_MS);

    const events: string[] = [];
    let finish: () => void = () => {};
    const holding = new Promise<void>((resolve) => (finish = resolve));
    const agent = await connectGpuAgent(coordinator.address);
    void agent.run(async (directive, received) => {
      const taskId = directive.parameters?.kind.case === "assignTask" ? directive.parameters.kind.value.taskId : "";
      events.push(`start ${taskId}`);
      if (taskId === "held") {
        // A long task reports progress, or its delivery lease (60 s) would end the attempt while the RMs change.
        const beat = setInterval(() => received.progress(50), 5000);
        await holding;
        clearInterval(beat);
      }
      events.push(`end ${taskId}`);
      return {};
    });
    const control = createClient(Control, connect(coordinator.address));
    const held = async (address: string) => (await createClient(ResourceManager, connect(address)).query({ requestId: crypto.randomUUID(), timestamp: timestampNow() })).resources.flatMap((s) => s.reservations.map((r) => [r.resourceId, r.holder]));
    const gpuTask = (taskId: string) => ({ task: { taskId, requiredCapabilities: ["work"], resources: [{ kind: "gpu", amount: 1 }] } });

    await control.submitTask(gpuTask("held"));
    await expect.poll(async () => (await control.getTask({ taskId: "held" })).task!.state, { timeout: WAIT_MS, interval: 100 }).toBe(TaskState.RUNNING);
    expect(await held(rm1.address)).toEqual([["gpu-0", "held"]]);

    // The RM dies; calls to it fail (ExplainTask asks it about a task with resources) until its breaker opens.
    await rm1.proc.stop("SIGKILL");
    await expect.poll(() => ids("resource_manager", prefix), { timeout: WAIT_MS, interval: 100 }).toEqual([]);
    await coordinator.proc.waitForLine((l) => l.msg === "no resource manager is registered: calls to it fail until one registers", WAIT_MS);
    const opened = (l: Record<string, unknown>) => l.msg === "breaker open: calls fail fast" && l.breaker === "resource-manager";
    const giveUp = Date.now() + WAIT_MS;
    while (!coordinator.proc.lines.some(opened)) {
      if (Date.now() > giveUp) throw new Error(`the resource manager's breaker did not open within ${WAIT_MS} ms of failing calls`);
      const code = await control.explainTask({ taskId: "held" }).then(() => Code.OK, (err: unknown) => toBatonError(err).code);
      expect(code).toBe(Code.UNAVAILABLE);
    }

    // A second RM registers. Taking it into use resets the breaker (logged before the switch is), so the next call reaches it at once rather than after the 10 s reset timeout.
    const rm2 = await serve(["--only", "resource-manager"], prefix);
    const rm2Id = await registeredId(rm2.proc);
    await coordinator.proc.waitForLine(found(rm2Id), WAIT_MS);
    const lineOf = (p: (l: Record<string, unknown>) => boolean) => coordinator.proc.lines.findIndex(p);
    const resetAt = lineOf((l) => l.msg === "breaker reset: another instance took over" && l.breaker === "resource-manager");
    expect(resetAt).toBeGreaterThan(lineOf(opened));
    expect(resetAt).toBeLessThan(lineOf(found(rm2Id)));
    expect((await control.explainTask({ taskId: "held" })).task?.state).toBe(TaskState.RUNNING);
    // The new RM was sent the running task's reservation.
    expect(await held(rm2.address)).toEqual([["gpu-0", "held"]]);

    // Another task needing the GPU is not placed while "held" holds it (by what the RM in use says is free)...
    await control.submitTask(gpuTask("next"));
    await expect.poll(async () => (await control.explainTask({ taskId: "next" })).summary, { timeout: WAIT_MS, interval: 100 }).toMatch("short of gpu resources");
    expect((await control.getTask({ taskId: "next" })).task!.state).toBe(TaskState.PENDING);
    // ...and is once it is released.
    finish();
    await succeeded(control, "held");
    await succeeded(control, "next");
    expect(events).toEqual(["start held", "end held", "start next", "end next"]);
    await expect.poll(() => held(rm2.address), { timeout: WAIT_MS, interval: 100 }).toEqual([]);
  });

  it("two Resource Managers with the same configuration keep an entry each; a SIGTERM removes its own at once", { timeout: 300_000 }, async () => {
    const a = await serve(["--only", "resource-manager"]);
    const b = await serve(["--only", "resource-manager"]);
    const [aId, bId] = [await registeredId(a.proc), await registeredId(b.proc)];
    expect(aId).not.toBe(bId);
    await expect.poll(() => ids("resource_manager"), { timeout: WAIT_MS, interval: 100 }).toEqual(expect.arrayContaining([aId, bId]));
    // A drained process revokes its lease: gone well before a TTL would pass, the other kept.
    await a.proc.stop("SIGTERM");
    expect(await ids("resource_manager")).not.toContain(aId);
    expect(await ids("resource_manager")).toContain(bId);
  });
});
