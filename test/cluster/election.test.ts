import { Etcd3 } from "etcd3";
import { describe, expect, it } from "vitest";
import { etcdServiceRegistry, LeaderElection, waitForChange, readKey, type RereadReason } from "../../src/cluster/index.js";
import { createLogger } from "../../src/logging.js";
import { FencedWriteError, openEtcdStore } from "../../src/store/index.js";
import { ETCD_MAX_TXN_OPS, startEtcd, useEtcd, type EtcdCluster } from "./etcd.js";

const logger = createLogger({ level: "silent" });
let etcd: EtcdCluster;
let client: Etcd3;
useEtcd((started) => ({ etcd, client } = started));

let n = 0;
function candidates(count: number, ttlSeconds = 2) {
  const key = `election-test/${++n}/leader`;
  const made = Array.from({ length: count }, (_, i) => {
    const c = new Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
    return { client: c, election: new LeaderElection({ client: c, key, address: `localhost:${5000 + i}`, ttlSeconds, recheckMs: 200, logger }) };
  });
  return { key, made, close: async () => { for (const m of made) { await m.election.close(); m.client.close(); } } };
}

describe("leader election on an etcd lease", () => {
  it("elects one; the other follows, names the leader, and takes over when it resigns", async () => {
    const { made: [a, b], close } = candidates(2);
    try {
      const termA = await a!.election.campaign();
      let bWon = false;
      const bTerm = b!.election.campaign().then((t) => ((bWon = true), t));
      // b has read the key: it names a as the leader while it waits.
      await expect.poll(() => b!.election.leaderAddress, { timeout: 30_000 }).toBe("localhost:5000");
      expect(bWon).toBe(false);
      const resigned = Date.now();
      await a!.election.close();
      const termB = await bTerm;
      expect(BigInt(termB.createRevision)).toBeGreaterThan(BigInt(termA.createRevision));
      expect(b!.election.leaderAddress).toBe("localhost:5001");
      // A resignation is seen through the watch, well before any lease could expire.
      console.log(`takeover after a resignation: ${Date.now() - resigned} ms`);
    } finally {
      await close();
    }
  });

  it("when the leader's lease is gone: it is told, its fenced writes are refused, a follower leads", async () => {
    const { key, made: [a, b], close } = candidates(2);
    try {
      const termA = await a!.election.campaign();
      const lost = new Promise<Error>((resolve) => a!.election.onLost(resolve));
      const bTerm = b!.election.campaign();
      const prefix = `fenced-${n}/`;
      const storeA = openEtcdStore({ endpoints: etcd.endpoints, prefix, maxTxnOps: ETCD_MAX_TXN_OPS, client: a!.client, fence: { key, createRevision: termA.createRevision } });
      expect(await storeA.write([{ type: "put", key: "task/1", value: new Uint8Array([1]) }])).toBe(true);
      // As etcd does when a stalled leader misses its keep-alives past the TTL.
      await client.leaseClient.leaseRevoke({ ID: termA.leaseId });
      const termB = await bTerm;
      await expect(storeA.write([{ type: "put", key: "task/2", value: new Uint8Array([2]) }])).rejects.toThrow(FencedWriteError);
      const storeB = openEtcdStore({ endpoints: etcd.endpoints, prefix, maxTxnOps: ETCD_MAX_TXN_OPS, client: b!.client, fence: { key, createRevision: termB.createRevision } });
      expect(await storeB.write([{ type: "put", key: "task/3", value: new Uint8Array([3]) }])).toBe(true);
      expect((await storeB.scan("task/")).map(([k]) => k)).toEqual(["task/1", "task/3"]);
      expect((await lost).message).toBeTruthy();
      expect(a!.election.current).toBeUndefined();
    } finally {
      await close();
    }
  });

  it("a follower's wait re-reads the key: a change its watch never reports is still found", async () => {
    const key = Buffer.from(`recheck-${++n}`);
    await client.put(key).value("x");
    const known = await readKey(client, key);
    const controller = new AbortController();
    // A watch that starts after the change (its start revision past it) sees nothing; the re-read must.
    const far = { ...known, revision: String(BigInt(known.revision) + 1000n) };
    const waiting = waitForChange(client, key, far, { recheckMs: 100, signal: controller.signal });
    await client.delete().key(key);
    const now = await waiting;
    expect(now.kv).toBeUndefined();
  });

  it("puts its registry entries back on a new lease when its lease lapses", async () => {
    const { key, made: [a], close } = candidates(1);
    try {
      const registry = etcdServiceRegistry(a!.client, { prefix: `relapse-${n}/`, leaderKey: key, leaseId: () => a!.election.leaseId() });
      const renewed = new Promise<void>((resolve) => a!.election.onNewLease(resolve));
      a!.election.onNewLease(() => void registry.register({ kind: "coordinator", id: "c1", address: "localhost:5000" }));
      await registry.register({ kind: "coordinator", id: "c1", address: "localhost:5000" });
      const first = await a!.election.leaseId();
      // What etcd does when this process was unreachable past its TTL.
      await client.leaseClient.leaseRevoke({ ID: first });
      expect(await registry.lookup("coordinator")).toEqual([]);
      await renewed;
      await expect.poll(async () => (await registry.lookup("coordinator")).map((e) => e.id), { timeout: 30_000 }).toEqual(["c1"]);
      expect(await a!.election.leaseId()).not.toBe(first);
    } finally {
      await close();
    }
  });

  it("registers services on the lease and finds the leader", async () => {
    const { key, made: [a], close } = candidates(1);
    try {
      const registry = etcdServiceRegistry(a!.client, { prefix: `reg-${n}/`, leaderKey: key, leaseId: () => a!.election.leaseId() });
      await registry.register({ kind: "coordinator", id: "c1", address: "localhost:5000" });
      await registry.register({ kind: "resource_manager", id: "c1", address: "localhost:5000" });
      expect(await registry.leader()).toBe("");
      await a!.election.campaign();
      expect(await registry.leader()).toBe("localhost:5000");
      expect((await registry.lookup("coordinator")).map((e) => [e.id, e.address])).toEqual([["c1", "localhost:5000"]]);
      expect(await registry.lookup("performance_monitor")).toEqual([]);
      // Resigned and its lease revoked: its entries are gone with it.
      await a!.election.close();
      expect(await registry.lookup("coordinator")).toEqual([]);
      expect(await registry.leader()).toBe("");
    } finally {
      await close();
    }
  });
});

describe("a follower's wait across an etcd restart", () => {
  it("re-reads the key when its watch reconnects, and finds a change the watch never reported", async () => {
    const own = await startEtcd();
    const c = new Etcd3({ hosts: own.endpoints.map((e) => `http://${e}`) });
    try {
      const key = Buffer.from("reconnect/leader");
      await c.put(key).value("x");
      const known = await readKey(c, key);
      const seen: Array<[RereadReason, boolean]> = [];
      // Its watch starts past any revision this test makes, so it reports nothing (as a watch
      // that lost events would), and no periodic re-read comes within the test: only a reconnect can tell.
      const far = { ...known, revision: String(BigInt(known.revision) + 1_000_000n) };
      const waiting = waitForChange(c, key, far, { recheckMs: 3_600_000, signal: new AbortController().signal, onReread: (why, changed) => seen.push([why, changed]) });
      await expect.poll(() => seen.map(([why]) => why).sort(), { timeout: 30_000 }).toEqual(["start", "watching"]);
      expect(seen.find(([why]) => why === "start")![1]).toBe(false);
      await c.delete().key(key);
      await own.restart(0);
      const now = await waiting;
      expect(now.kv).toBeUndefined();
      // The reconnect re-read found it. (etcd3 resumes a reconnected watch from the last revision
      // it saw, so here the watch may report the delete too; the re-read does not depend on that.)
      expect(seen).toContainEqual(["reconnect", true]);
    } finally {
      c.close();
      await own.stop();
    }
  }, 120_000);
});
