// Two coordinators in this process on one real etcd, over real mutual TLS: the follower
// forwards Control reads to the leader as itself, naming the caller, and the leader checks
// the caller (not the follower) against its policy and deny list; writes are still refused
// with the leader's address, and a forwarded call is never forwarded again.
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import type { ChannelCredentials } from "@grpc/grpc-js";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { Code, LEADER_TRAILER, toBatonError } from "../../src/errors.js";
import { clientCredentials, createChannel, createClient, serverCredentials, type Channel, type ServiceClient } from "../../src/rpc/index.js";
import { buildConfig } from "../../src/config.js";
import { createLogger } from "../../src/logging.js";
import { BatonServer } from "../../src/server/index.js";
import { CONTROL_READS, FORWARDED_IDENTITY_HEADER, FORWARDED_SERIAL_HEADER, METHOD_CAPABILITIES, normalizeSerial, revokeCertificate } from "../../src/security/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { freePort } from "../helpers/process.js";
import { LogCapture, startServer, waitFor, waitForAsync, type TestServer } from "../helpers/server.js";
import { baton, operatorFiles } from "../cli/cli-helpers.js";
import { ETCD_MAX_TXN_OPS, startEtcd, type EtcdCluster } from "./etcd.js";

const LEADING = "leading: journal loaded from etcd; serving agents and Control";
const FOLLOWING = "following: another coordinator leads";
// The leader's policy: the default operator's, less tasks.explain (the follower keeps the default).
const NARROW_OPERATOR = ["tasks.submit", "tasks.read", "tasks.cancel", "agents.*", "coordination.read", "events.watch", "health.check", "reflection"];

let etcd: EtcdCluster;
let pki: TestPki;
let leader: TestServer;
let follower: TestServer;
let leaderRevoked: string;
let certsDir: string;
const channels: Channel[] = [];

function control(address: string, credentials: ChannelCredentials): ServiceClient<typeof Control> {
  const ch = createChannel(address, credentials);
  channels.push(ch);
  return createClient(Control, ch);
}

async function failure(call: Promise<unknown>) {
  return toBatonError(await call.then(() => { throw new Error("the call was expected to fail, and succeeded"); }, (e: unknown) => e));
}

beforeAll(async () => {
  etcd = await startEtcd();
  pki = await makePki();
  // peer() dials the leader with the configured files: the coordinator's own certificate.
  const dir = pki.writeFiles({
    "ca.pem": pki.ca.certPem,
    "coordinator.pem": pki.server.certPem,
    "coordinator.key": pki.server.keyPem,
    "narrow.json": JSON.stringify({ roles: { operator: NARROW_OPERATOR } }),
  });
  leaderRevoked = join(dir, "leader-revoked.json");
  certsDir = dir;
  const base = {
    adminListen: "",
    tls: { certsDir: dir },
    store: { kind: "etcd" as const, etcd: { endpoints: etcd.endpoints, prefix: "follower-reads/", maxTxnOps: ETCD_MAX_TXN_OPS, caFile: "", certFile: "", keyFile: "", dialTimeoutMs: 5000 } },
    // A long lease: a loaded machine must not see a failover in the middle of a test.
    cluster: { leaseTtlSeconds: 30, recheckMs: 200 },
  };
  leader = await startServer(pki, { ...base, coordinatorId: "coordinator-a", security: { policyFile: join(dir, "narrow.json") }, tls: { certsDir: dir, revokedFile: leaderRevoked } });
  await waitFor(() => leader.logs.lines.some((l) => l.msg === LEADING), 60_000, "the first coordinator to lead");
  follower = await startServer(pki, { ...base, coordinatorId: "coordinator-b" });
  await waitFor(() => follower.logs.lines.some((l) => l.msg === FOLLOWING), 60_000, "the second coordinator to follow");
}, 180_000);

afterAll(async () => {
  for (const ch of channels) ch.close();
  await follower?.stop();
  await leader?.stop();
  await etcd?.stop();
  pki?.cleanup();
});

describe("Control reads on a follower", () => {
  it("lists as reads only Control methods the policy knows", () => {
    expect(CONTROL_READS.size).toBeGreaterThan(0);
    for (const path of CONTROL_READS) {
      expect(path.startsWith("/baton.v1.Control/"), path).toBe(true);
      expect(METHOD_CAPABILITIES[path], path).toBeDefined();
    }
    for (const write of ["SubmitTask", "SubmitTasks", "ResubmitTask", "CancelTask", "DrainAgent", "UndrainAgent"]) expect(CONTROL_READS.has(`/baton.v1.Control/${write}`)).toBe(false);
  });

  it("GetTask, ListTasks and GetCoordination on a follower answer the leader's data", async () => {
    const operator = await pki.credentials("operator", "reader");
    const onLeader = control(leader.address, operator);
    const onFollower = control(follower.address, operator);
    await onLeader.submitTask({ task: { taskId: "read-me", requiredCapabilities: ["nobody-has-this"] } });
    const { task } = await onFollower.getTask({ taskId: "read-me" }, { deadline: 30_000 });
    expect(task?.spec?.taskId).toBe("read-me");
    expect(task?.state).toBe(TaskState.PENDING);
    const listed = await onFollower.listTasks({ pageSize: 100 }, { deadline: 30_000 });
    const direct = await onLeader.listTasks({ pageSize: 100 });
    expect(listed.tasks.map((t) => t.spec?.taskId)).toEqual(direct.tasks.map((t) => t.spec?.taskId));
    expect(listed.tasks.map((t) => t.spec?.taskId)).toContain("read-me");
    expect((await onFollower.getCoordination({}, { deadline: 30_000 })).coordinatorId).toBe("coordinator-a");
    // The leader's errors come back as they are: code and message.
    const missing = await failure(onFollower.getTask({ taskId: "no-such-task" }, { deadline: 30_000 }));
    const missingOnLeader = await failure(onLeader.getTask({ taskId: "no-such-task" }));
    expect(missing.code).toBe(Code.NOT_FOUND);
    expect(missing.message).toBe(missingOnLeader.message);
  });

  it("WatchEvents through a follower delivers an event that happens on the leader; cancelling it ends the leader's call", async () => {
    const operator = await pki.credentials("operator", "watcher");
    const onLeader = control(leader.address, operator);
    const watching = leader.server.access.liveCalls;
    const controller = new AbortController();
    const stream = control(follower.address, operator).watchEvents({ topics: ["task.watched-1.*"] }, { signal: controller.signal, deadline: 120_000 });
    const iterator = stream[Symbol.asyncIterator]();
    const first = iterator.next();
    // Awaited below; without a handler, a failed wait would leave its rejection unhandled at shutdown.
    first.catch(() => undefined);
    // The forwarded watch is open on the leader (as the follower's call) before the event happens.
    await waitFor(() => leader.server.access.liveCalls > watching, 60_000, "the forwarded watch to open on the leader");
    await onLeader.submitTask({ task: { taskId: "watched-1", requiredCapabilities: ["nobody-has-this"] } });
    const { value, done } = await first;
    expect(done).toBe(false);
    expect(value?.event?.topic).toBe("task.watched-1.pending");
    controller.abort();
    await iterator.return?.();
    await waitFor(() => leader.server.access.liveCalls === watching, 60_000, "the leader's end of the cancelled watch to close");
  });

  it("a deadline set on the follower's caller ends the leader's call too", async () => {
    const operator = await pki.credentials("operator", "deadline");
    const watching = leader.server.access.liveCalls;
    const stream = control(follower.address, operator).watchEvents({ topics: ["task.never.#"] }, { deadline: 3000 });
    const err = await failure((async () => { for await (const _ of stream) { /* nothing is published on this topic */ } })());
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    await waitFor(() => leader.server.access.liveCalls === watching, 60_000, "the leader's end of the expired watch to close");
  });

  it("a write on a follower is still refused with UNAVAILABLE and the baton-leader trailer", async () => {
    const operator = await pki.credentials("operator", "writer");
    const err = await failure(control(follower.address, operator).submitTask({ task: { taskId: "written-on-follower", requiredCapabilities: ["x"] } }));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toContain(`the leader is at ${leader.address}`);
    expect(err.trailers[LEADER_TRAILER]).toBe(leader.address);
    expect((await failure(control(leader.address, operator).getTask({ taskId: "written-on-follower" }))).code).toBe(Code.NOT_FOUND);
  });

  it("the leader checks the forwarded caller's capability: an operator its policy denies tasks.explain is refused through the follower", async () => {
    const operator = await pki.credentials("operator", "explainer");
    await control(leader.address, operator).submitTask({ task: { taskId: "explain-me", requiredCapabilities: ["x"] } });
    const err = await failure(control(follower.address, operator).explainTask({ taskId: "explain-me" }, { deadline: 30_000 }));
    expect(err.code).toBe(Code.PERMISSION_DENIED);
    expect(err.message).toContain("spiffe://baton.local/operator/explainer (role operator) lacks the capability tasks.explain");
    // It was the leader that refused, for the operator the follower named.
    const refused = leader.logs.lines.find((l) => l.msg === "call refused" && l.identity === "spiffe://baton.local/operator/explainer");
    expect(refused?.forwarded_by).toBe("spiffe://baton.local/coordinator/coordinator");
    // A caller the follower's own policy refuses never reaches the leader.
    const agent = await failure(control(follower.address, await pki.credentials("managed_agent", "nosy")).getTask({ taskId: "explain-me" }));
    expect(agent.code).toBe(Code.PERMISSION_DENIED);
    expect(agent.message).toContain("lacks the capability tasks.read");
  });

  it("the leader checks the forwarded caller's certificate serial against its own deny list", async () => {
    const leaf = await pki.issue("operator", "revoked-on-leader");
    const credentials = clientCredentials({ ca: pki.ca.certPem, cert: leaf.certPem, key: leaf.keyPem });
    const onFollower = control(follower.address, credentials);
    expect((await onFollower.listTasks({ pageSize: 1 }, { deadline: 30_000 })).tasks.length).toBe(1);
    // Only the leader's list has it (as when the follower's copy is behind).
    revokeCertificate(leaderRevoked, { serial: leaf.serial, reason: "keyCompromise" });
    leader.server.access.reloadDenyList();
    const err = await failure(onFollower.listTasks({ pageSize: 1 }, { deadline: 30_000 }));
    expect(err.code).toBe(Code.UNAUTHENTICATED);
    expect(err.message).toContain("is revoked");
  });

  it("only a role that holds control.forward may forward: the header from a proven operator's or agent's certificate is PERMISSION_DENIED", async () => {
    for (const [role, name] of [["operator", "impostor"], ["managed_agent", "impostor-agent"], ["resource_manager", "impostor-rm"]] as const) {
      const direct = control(leader.address, await pki.credentials(role, name));
      const err = await failure(direct.getTask({ taskId: "read-me" }, { headers: { [FORWARDED_IDENTITY_HEADER]: "spiffe://baton.local/operator/root" } }));
      // Authenticated (its certificate is good), not allowed: not UNAUTHENTICATED.
      expect(err.code, role).toBe(Code.PERMISSION_DENIED);
      expect(err.message, role).toContain(`spiffe://baton.local/${role}/${name} (role ${role}) lacks the capability control.forward`);
      expect(err.message, role).toContain(FORWARDED_IDENTITY_HEADER);
    }
  });

  it("a coordinator certificate forwards only while the leader's policy gives its role control.forward", async () => {
    const dir = pki.writeFiles({ "no-forward.json": JSON.stringify({ roles: { coordinator: ["resources.*", "metrics.*", "health.check", "reflection"] } }) });
    const narrowed = await startServer(pki, { adminListen: "", security: { policyFile: join(dir, "no-forward.json") } });
    try {
      const asCoordinator = clientCredentials({ ca: pki.ca.certPem, cert: pki.server.certPem, key: pki.server.keyPem });
      const err = await failure(control(narrowed.address, asCoordinator).listTasks({ pageSize: 1 }, { headers: { [FORWARDED_IDENTITY_HEADER]: "spiffe://baton.local/operator/root" } }));
      expect(err.code).toBe(Code.PERMISSION_DENIED);
      expect(err.message).toContain("spiffe://baton.local/coordinator/coordinator (role coordinator) lacks the capability control.forward");
      const refused = narrowed.logs.lines.find((l) => l.msg === "call refused" && l.capability === "control.forward");
      expect(refused?.identity).toBe("spiffe://baton.local/coordinator/coordinator");
    } finally {
      await narrowed.stop();
    }
  });

  it("revoking a forwarded caller on the leader alone ends its WatchEvents through the follower with the revoked status", async () => {
    const leaf = await pki.issue("operator", "watcher-revoked-on-leader");
    const credentials = clientCredentials({ ca: pki.ca.certPem, cert: leaf.certPem, key: leaf.keyPem });
    const watching = leader.server.access.liveCalls;
    // The deadline only bounds the wait when the stream is (wrongly) left open.
    const stream = control(follower.address, credentials).watchEvents({ topics: ["task.never-revoked.#"] }, { deadline: 90_000 });
    const next = stream[Symbol.asyncIterator]().next();
    next.catch(() => undefined);
    await waitFor(() => leader.server.access.liveCalls > watching, 60_000, "the forwarded watch to open on the leader");
    revokeCertificate(leaderRevoked, { serial: leaf.serial, reason: "keyCompromise" });
    leader.server.access.reloadDenyList();
    const err = await failure(next);
    expect(err.code).toBe(Code.UNAUTHENTICATED);
    expect(err.message).toContain(`certificate serial ${normalizeSerial(leaf.serial)}`);
    expect(err.message).toContain("was revoked");
    expect(err.message).toContain("spiffe://baton.local/operator/watcher-revoked-on-leader");
    // The follower's list does not have it: the follower did not end the call, the leader did.
    expect(follower.logs.lines.some((l) => l.msg === "closing a call whose certificate was revoked")).toBe(false);
    await waitFor(() => leader.server.access.liveCalls === watching, 60_000, "the leader's end of the revoked watch to close");
  });

  it("a coordinator's forwarding never widens what the caller may do", async () => {
    const asCoordinator = clientCredentials({ ca: pki.ca.certPem, cert: pki.server.certPem, key: pki.server.keyPem });
    const direct = control(leader.address, asCoordinator);
    // An agent named as the caller has its own capabilities, not the coordinator's.
    const agent = await failure(direct.getTask({ taskId: "read-me" }, { headers: { [FORWARDED_IDENTITY_HEADER]: "spiffe://baton.local/managed_agent/someone" } }));
    expect(agent.code).toBe(Code.PERMISSION_DENIED);
    expect(agent.message).toContain("spiffe://baton.local/managed_agent/someone (role managed_agent) lacks the capability tasks.read");
    // Writes are never forwarded: one that claims to be is refused.
    const write = await failure(direct.submitTask({ task: { taskId: "forwarded-write", requiredCapabilities: ["x"] } }, { headers: { [FORWARDED_IDENTITY_HEADER]: "spiffe://baton.local/operator/root" } }));
    expect(write.code).toBe(Code.PERMISSION_DENIED);
    expect(write.message).toContain("only Control reads are forwarded");
    // A caller of another trust domain, or a malformed serial, is no identity.
    const foreign = await failure(direct.getTask({ taskId: "read-me" }, { headers: { [FORWARDED_IDENTITY_HEADER]: "spiffe://elsewhere.example/operator/root" } }));
    expect(foreign.code).toBe(Code.UNAUTHENTICATED);
    expect(foreign.message).toContain("not in trust domain baton.local");
    const badSerial = await failure(direct.getTask({ taskId: "read-me" }, { headers: { [FORWARDED_IDENTITY_HEADER]: "spiffe://baton.local/operator/root", [FORWARDED_SERIAL_HEADER]: "zz" } }));
    expect(badSerial.code).toBe(Code.UNAUTHENTICATED);
    expect(badSerial.message).toContain(FORWARDED_SERIAL_HEADER);
    // Named properly, the operator reads through the coordinator's call.
    expect((await direct.getTask({ taskId: "read-me" }, { headers: { [FORWARDED_IDENTITY_HEADER]: "spiffe://baton.local/operator/root" } })).task?.spec?.taskId).toBe("read-me");
  });

  it("a forwarded call that reaches a follower is not forwarded again: UNAVAILABLE naming the leader", async () => {
    // As when leadership moved between the sender's read of the leader and its call.
    const asCoordinator = clientCredentials({ ca: pki.ca.certPem, cert: pki.server.certPem, key: pki.server.keyPem });
    const err = await failure(control(follower.address, asCoordinator).getTask({ taskId: "read-me" }, { headers: { [FORWARDED_IDENTITY_HEADER]: "spiffe://baton.local/operator/root" } }));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.trailers[LEADER_TRAILER]).toBe(leader.address);
  });

  it("a follower that cannot reach the leader answers UNAVAILABLE naming it, so the caller may go there itself", { timeout: 120_000 }, async () => {
    // The election key of another replica set, held by a "leader" at an address where nothing listens.
    const etcdClient = new Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
    const gone = `localhost:${await freePort()}`;
    const lease = etcdClient.lease(60);
    await lease.put("unreachable/leader").value(gone);
    const lonely = await startServer(pki, { adminListen: "", tls: { certsDir: certsDir }, store: { kind: "etcd", etcd: { endpoints: etcd.endpoints, prefix: "unreachable/", maxTxnOps: ETCD_MAX_TXN_OPS, caFile: "", certFile: "", keyFile: "", dialTimeoutMs: 5000 } }, cluster: { leaseTtlSeconds: 30, recheckMs: 200 }, coordinatorId: "coordinator-lonely" });
    try {
      await waitFor(() => lonely.logs.lines.some((l) => l.msg === FOLLOWING), 60_000, "the coordinator to follow the unreachable leader");
      const err = await failure(control(lonely.address, await pki.credentials("operator", "stranded")).getTask({ taskId: "anything" }));
      expect(err.code).toBe(Code.UNAVAILABLE);
      expect(err.message).toContain(`cannot reach the leader at ${gone}`);
      expect(err.trailers[LEADER_TRAILER]).toBe(gone);
    } finally {
      await lonely.stop();
      await lease.revoke();
      etcdClient.close();
    }
  });

  it("the CLI's task get and task list against a follower answer there, without following", { timeout: 240_000 }, async () => {
    const files = await operatorFiles(pki);
    const get = await baton(["task", "get", "read-me", "-o", "json", ...files.flags(follower.address)]);
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).toContain("read-me");
    expect(get.stderr).not.toContain("is a follower");
    const list = await baton(["task", "list", "-o", "json", ...files.flags(follower.address)]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain("read-me");
    expect(list.stderr).not.toContain("is a follower");
  });
});

describe("leadership changing hands", () => {
  it("a coordinator elected and still loading its journal answers UNAVAILABLE, not ready, rather than naming itself as the leader", { timeout: 180_000 }, async () => {
    // Its own etcd: paused below, which must not touch the leases of the other tests' coordinators.
    const own = await startEtcd();
    const stopped = { etcd: false };
    // The election logs "elected leader" synchronously before the journal is read: pausing
    // etcd right there holds this coordinator in the window between election and serving.
    class PauseOnElection extends LogCapture {
      override _write(chunk: Buffer, enc: string, done: () => void): void {
        super._write(chunk, enc, done);
        if (!stopped.etcd && this.lines.some((l) => l.msg === "elected leader")) {
          own.members[0]!.child.kill("SIGSTOP");
          stopped.etcd = true;
        }
      }
    }
    const logs = new PauseOnElection();
    const config = buildConfig({
      listen: "127.0.0.1:0",
      adminListen: "",
      coordinatorId: "coordinator-loading",
      tls: { trustDomain: pki.trustDomain, certsDir },
      store: { kind: "etcd", etcd: { endpoints: own.endpoints, prefix: "loading/", maxTxnOps: ETCD_MAX_TXN_OPS, caFile: "", certFile: "", keyFile: "", dialTimeoutMs: 5000 } },
      cluster: { leaseTtlSeconds: 30, recheckMs: 200 },
    });
    const server = new BatonServer({ config, logger: createLogger({ level: "debug", destination: logs }) });
    try {
      const port = await server.start(serverCredentials({ ca: pki.ca.certPem, cert: pki.server.certPem, key: pki.server.keyPem }));
      await waitFor(() => stopped.etcd, 60_000, "the coordinator to be elected (etcd is paused then)");
      const onIt = control(`localhost:${port}`, await pki.credentials("operator", "early"));
      for (const call of [() => onIt.getTask({ taskId: "anything" }, { deadline: 30_000 }), () => onIt.submitTask({ task: { taskId: "early", requiredCapabilities: ["x"] } }, { deadline: 30_000 })]) {
        const err = await failure(call());
        expect(err.code).toBe(Code.UNAVAILABLE);
        expect(err.message).toBe("this coordinator was elected and is loading its journal; retry shortly");
        expect(err.trailers[LEADER_TRAILER]).toBeUndefined();
      }
      own.members[0]!.child.kill("SIGCONT");
      await waitFor(() => logs.lines.some((l) => l.msg === LEADING), 60_000, "the coordinator to lead once etcd answers again");
      expect((await failure(onIt.getTask({ taskId: "anything" }, { deadline: 30_000 }))).code).toBe(Code.NOT_FOUND);
    } finally {
      own.members[0]!.child.kill("SIGCONT");
      await server.shutdown({ graceMs: 1000 });
      await own.stop();
    }
  });

  it("when leadership moves, a follower closes its channel to the former leader and forwards to the new one", { timeout: 300_000 }, async () => {
    const moving = { adminListen: "", tls: { certsDir }, store: { kind: "etcd" as const, etcd: { endpoints: etcd.endpoints, prefix: "moving/", maxTxnOps: ETCD_MAX_TXN_OPS, caFile: "", certFile: "", keyFile: "", dialTimeoutMs: 5000 } }, cluster: { leaseTtlSeconds: 30, recheckMs: 200 } };
    const first = await startServer(pki, { ...moving, coordinatorId: "move-a" });
    const others: TestServer[] = [];
    let firstStopped = false;
    try {
      await waitFor(() => first.logs.lines.some((l) => l.msg === LEADING), 60_000, "move-a to lead");
      for (const id of ["move-b", "move-c"]) {
        const s = await startServer(pki, { ...moving, coordinatorId: id });
        others.push(s);
        await waitFor(() => s.logs.lines.some((l) => l.msg === FOLLOWING), 60_000, `${id} to follow`);
      }
      const operator = await pki.credentials("operator", "mover");
      // Each follower dials the leader to forward.
      for (const s of others) expect((await control(s.address, operator).getCoordination({}, { deadline: 30_000 })).coordinatorId).toBe("move-a");
      await first.stop();
      firstStopped = true;
      const elected = await waitFor(() => others.find((s) => s.logs.lines.some((l) => l.msg === LEADING)), 120_000, "move-b or move-c to take over");
      const still = others.find((s) => s !== elected)!;
      const closedFirst = (s: TestServer) => s.logs.lines.some((l) => l.msg === "closed the channel to a former leader" && l.address === first.address);
      // The new leader forwards no more: its channel to the old one goes when it is elected.
      await waitFor(() => closedFirst(elected), 60_000, "the new leader to close its channel to the former one");
      // The remaining follower reads through the new leader, and drops the old channel.
      const newId = elected.config.coordinatorId;
      const onStill = control(still.address, operator);
      // Until the follower has read the new leader's key it answers UNAVAILABLE (no leader, or the old one gone).
      await waitForAsync(async () => (await onStill.getCoordination({}, { deadline: 30_000 }).catch(() => undefined))?.coordinatorId === newId, 120_000, "a read through the remaining follower to answer the new leader's data");
      expect(closedFirst(still)).toBe(true);
    } finally {
      for (const s of others) await s.stop();
      if (!firstStopped) await first.stop();
    }
  });
});
