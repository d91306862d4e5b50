// Two coordinators in this process on one etcd: a follower refuses naming the leader (and
// the SDK follows it), and a leader whose lease is gone has its writes refused even
// before it has noticed (its keep-alive not yet answered): the fence, not the lease alone.
import type { Etcd3 } from "etcd3";
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { Code, LEADER_TRAILER, toBatonError } from "../../src/errors.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { ROOT, run } from "../helpers/process.js";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";
import { baton, operatorFiles } from "../cli/cli-helpers.js";
import { ETCD_MAX_TXN_OPS, useEtcd, type EtcdCluster } from "./etcd.js";

const fx = useFixture();
let etcd: EtcdCluster;
let client: Etcd3;
useEtcd((started) => ({ etcd, client } = started));

const LEADING = "leading: journal loaded from etcd; serving agents and Control";
let n = 0;

async function pair(): Promise<{ a: TestServer; b: TestServer; prefix: string }> {
  const prefix = `fencing-${++n}/`;
  // A long lease: the leader's keep-alive (every TTL/3) does not tell it of a revoked lease within the test.
  const overrides = { store: { kind: "etcd" as const, etcd: { endpoints: etcd.endpoints, prefix, maxTxnOps: ETCD_MAX_TXN_OPS, caFile: "", certFile: "", keyFile: "", dialTimeoutMs: 5000 } }, cluster: { leaseTtlSeconds: 60, recheckMs: 200 }, adminListen: "" };
  const a = await startServer(fx.pki, { ...overrides, coordinatorId: "coordinator-a" });
  fx.defer(() => a.stop());
  await waitFor(() => a.logs.lines.some((l) => l.msg === LEADING), 60_000, "a to lead");
  const b = await startServer(fx.pki, { ...overrides, coordinatorId: "coordinator-b" });
  fx.defer(() => b.stop());
  await waitFor(() => b.logs.lines.some((l) => l.msg === "following: another coordinator leads"), 60_000, "b to follow");
  return { a, b, prefix };
}

describe("coordinators on etcd", () => {
  it("a follower refuses Control writes and agent sessions with UNAVAILABLE naming the leader; the SDK goes there", async () => {
    const { a, b } = await pair();
    const operator = await fx.pki.credentials("operator", "ops");
    fx.srv = b;
    const control = createClient(Control, fx.channel(operator));
    // Reads it forwards to the leader (test/cluster/follower-reads.test.ts).
    const err = toBatonError(await control.submitTask({ task: { taskId: "on-follower", requiredCapabilities: ["x"] } }).then(() => undefined, (e: unknown) => e));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toContain(`the leader is at ${a.address}`);
    expect(err.trailers[LEADER_TRAILER]).toBe(a.address);
    // Health checks send traffic to the leader: the follower is up, but serves neither.
    const health = createClient(Health, fx.channel(operator));
    expect((await health.check({ service: "baton.v1.Coordinator" })).status).toBe(ServingStatus.NOT_SERVING);
    expect((await health.check({ service: "baton.v1.Control" })).status).toBe(ServingStatus.NOT_SERVING);
    fx.srv = a;
    expect((await createClient(Health, fx.channel(operator)).check({ service: "baton.v1.Coordinator" })).status).toBe(ServingStatus.SERVING);
    fx.srv = b;
    // An agent pointed at the follower ends up in a session with the leader.
    const agent = await fx.agent("agent-1", { reconnectInitialMs: 20 });
    const welcome = await agent.connect();
    expect(welcome.coordinatorId).toBe("coordinator-a");
  });

  it("the CLI pointed at a follower goes to the leader it names", { timeout: 240_000 }, async () => {
    const { a, b } = await pair();
    const files = await operatorFiles(fx.pki);
    const submit = await baton(["task", "submit", "via-follower", "-o", "json", ...files.flags(b.address)]);
    expect(submit.code, submit.stderr).toBe(0);
    expect(submit.stderr).toContain(`${b.address} is a follower; the leader is ${a.address}`);
    fx.srv = a;
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    expect((await control.getTask({ taskId: "via-follower" })).task?.spec?.taskId).toBe("via-follower");
  });

  it("a Python agent pointed at a follower goes to the leader it names, and serves a task there", { timeout: 240_000 }, async (ctx) => {
    const python = await run("/usr/bin/python3", ["-c", "import grpc, google.protobuf, cryptography"], { timeoutMs: 60_000 }).catch(() => ({ code: -1 }));
    if (python.code !== 0 && process.env.CI !== "true") ctx.skip("needs /usr/bin/python3 with grpcio, protobuf and cryptography: apt-get install -y python3-grpcio python3-protobuf python3-cryptography");
    const { a, b } = await pair();
    const leaf = await fx.pki.issue("managed_agent", "py_follower");
    const dir = fx.pki.writeFiles({ "ca.pem": fx.pki.ca.certPem, "agent.pem": leaf.certPem, "agent.key": leaf.keyPem });
    const child = spawn("/usr/bin/python3", [join(ROOT, "examples/python/sdk_agent.py")], {
      env: { ...process.env, PYTHONPATH: join(ROOT, "sdk/python"), PYTHONDONTWRITEBYTECODE: "1", BATON_ADDRESS: b.address, BATON_AGENT_ID: "py_follower", BATON_CA: join(dir, "ca.pem"), BATON_CERT: join(dir, "agent.pem"), BATON_KEY: join(dir, "agent.key") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    fx.defer(() => void child.kill("SIGKILL"));
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => d.toString().includes("welcome") && resolve());
      child.once("exit", (code) => reject(new Error(`the Python agent exited (${code}): ${stderr}`)));
    });
    expect(stderr).toContain(`${b.address} is a follower; the leader is ${a.address}`);
    fx.srv = a;
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    await control.submitTask({ task: { taskId: "py-on-leader", requiredCapabilities: ["python"], input: { numbers: [2, 3] }, target: { agentId: "py_follower" } } });
    for (const deadline = Date.now() + 60_000; ; ) {
      const { task } = await control.getTask({ taskId: "py-on-leader" });
      if (task?.state === TaskState.SUCCEEDED) {
        expect(task.result).toMatchObject({ sum: 5, by: "py_follower" });
        break;
      }
      if (Date.now() > deadline) throw new Error(`the task did not succeed on the leader: ${JSON.stringify(task?.state)}; agent: ${stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it("a leader whose lease is gone cannot write, before it knows: its submit fails, the new leader has no trace of it", async () => {
    const { a, b, prefix } = await pair();
    const operator = await fx.pki.credentials("operator", "ops");
    fx.srv = a;
    const toA = createClient(Control, fx.channel(operator));
    await toA.submitTask({ task: { taskId: "before", requiredCapabilities: ["work"] } });
    // What etcd does to a leader that stalls past its TTL: the lease, and the election key on it, are gone.
    const leaderKey = (await client.kv.range({ key: Buffer.from(`${prefix}leader`) })).kvs[0]!;
    await client.leaseClient.leaseRevoke({ ID: leaderKey.lease });
    await waitFor(() => b.logs.lines.some((l) => l.msg === LEADING), 60_000, "b to take over");
    // a still believes it leads (no keep-alive answered yet) and takes the call; the fence refuses the write.
    const err = await toA.submitTask({ task: { taskId: "late", requiredCapabilities: ["work"] } }, { deadline: 10_000 }).then(() => undefined, (e: unknown) => toBatonError(e));
    expect(err?.code, "the deposed leader's submit must fail").toBe(Code.UNAVAILABLE);
    expect(a.logs.lines.some((l) => /write refused/.test(JSON.stringify(l.err ?? "")))).toBe(true);
    fx.srv = b;
    const toB = createClient(Control, fx.channel(operator));
    const tasks = await toB.listTasks({ pageSize: 10 });
    expect(tasks.tasks.map((t) => t.spec!.taskId)).toEqual(["before"]);
  });
});
