import { Etcd3 } from "etcd3";
import { describe, expect, it } from "vitest";
import { etcdServiceRegistry, followPrefix, followRegistryPeer, type RereadReason } from "../../src/cluster/index.js";
import { Code } from "../../src/errors.js";
import { createLogger } from "../../src/logging.js";
import { startEtcd, useEtcd, type EtcdCluster } from "./etcd.js";

// How a coordinator follows the registry: the prefix re-read at a revision (on events, on a
// watch reconnect, on a timer), and the instance in use replaced when its entry goes.

const logger = createLogger({ level: "silent" });
let etcd: EtcdCluster;
let client: Etcd3;
useEtcd((started) => ({ etcd, client } = started));

describe("following the service registry", () => {
  it("keeps the instance in use while it is registered, moves to another when it goes, and is UNAVAILABLE naming the prefix when none is left", async () => {
    const leases = [client.lease(60), client.lease(60), client.lease(60)];
    const registries = leases.map((lease) => etcdServiceRegistry(client, { prefix: "peer-test/", leaderKey: "peer-test/leader", leaseId: () => lease.grant(), recheckMs: 3_600_000 }));
    const closed: string[] = [];
    const taken: string[] = [];
    const peer = await followRegistryPeer(registries[0]!, "resource_manager", { connect: (address) => ({ address, close: () => closed.push(address) }), logger, onSwitch: (e) => taken.push(e.id) });
    try {
      expect(() => peer.resolve()).toThrow(expect.objectContaining({ code: Code.UNAVAILABLE, message: expect.stringContaining("no resource manager is registered in etcd under peer-test/services/resource_manager/") }));
      await registries[0]!.register({ kind: "resource_manager", id: "rm-a", address: "localhost:1" });
      await expect.poll(() => peer.current?.id, { timeout: 30_000 }).toBe("rm-a");
      await registries[1]!.register({ kind: "resource_manager", id: "rm-b", address: "localhost:2" });
      await expect.poll(async () => (await registries[0]!.lookup("resource_manager")).length, { timeout: 30_000 }).toBe(2);
      // A second instance does not take the first one's place.
      expect(peer.resolve()).toMatchObject({ instance: "rm-a", channel: { address: "localhost:1" } });
      // rm-a's lease goes (its process died): rm-b is used, and rm-a's channel closed.
      await leases[0]!.revoke();
      await expect.poll(() => peer.current?.id, { timeout: 30_000 }).toBe("rm-b");
      expect(peer.resolve()).toMatchObject({ instance: "rm-b", channel: { address: "localhost:2" } });
      expect(closed).toEqual(["localhost:1"]);
      await leases[1]!.revoke();
      await expect.poll(() => peer.current, { timeout: 30_000 }).toBeUndefined();
      expect(() => peer.resolve()).toThrow(/no resource manager is registered in etcd under peer-test\/services\/resource_manager\//);
      await registries[2]!.register({ kind: "resource_manager", id: "rm-c", address: "localhost:3" });
      await expect.poll(() => peer.current?.id, { timeout: 30_000 }).toBe("rm-c");
      // Each instance taken into use was announced once (the server resets its breaker then).
      expect(taken).toEqual(["rm-a", "rm-b", "rm-c"]);
    } finally {
      peer.close();
      await leases[2]!.revoke();
    }
  });

  it("re-reads the prefix when its watch reconnects (etcd restarted), not trusting the watch alone", async () => {
    const own = await startEtcd();
    const c = new Etcd3({ hosts: own.endpoints.map((e) => `http://${e}`) });
    const stop = new AbortController();
    try {
      const reads: Array<{ why: RereadReason; keys: string[] }> = [];
      // No periodic re-read within the test: only an event or a reconnect can cause one.
      await followPrefix(c, Buffer.from("watch-test/"), { recheckMs: 3_600_000, signal: stop.signal, onRead: (state, why) => reads.push({ why, keys: state.kvs.map((kv) => kv.key.toString()) }) });
      expect(reads).toEqual([{ why: "start", keys: [] }]);
      await c.put("watch-test/a").value("1");
      await expect.poll(() => reads.at(-1), { timeout: 30_000 }).toEqual({ why: "event", keys: ["watch-test/a"] });
      await own.restart(0);
      await expect.poll(() => reads.some((r) => r.why === "reconnect"), { timeout: 60_000 }).toBe(true);
      expect(reads.find((r) => r.why === "reconnect")!.keys).toEqual(["watch-test/a"]);
    } finally {
      stop.abort();
      c.close();
      await own.stop();
    }
  });
});
