import type { BatonConfig } from "../config.js";
import { BatonError, Code, LEADER_TRAILER } from "../errors.js";
import type { Logger } from "../logging.js";
import { connectEtcd, etcdConnection, etcdStoreOptions, openEtcdStore, type Store } from "../store/index.js";
import { LeaderElection, type Term } from "./leader-election.js";
import { followRegistryPeer, type RegistryPeer } from "./registry-peer.js";
import { etcdServiceRegistry, type ServiceKind, type ServiceRegistry } from "./service-registry.js";
import { instanceId, registerServices } from "./service-member.js";

export { LEADER_TRAILER };

/** This process in a replica set on etcd. */
export interface ClusterMember {
  readonly election: LeaderElection;
  readonly registry: ServiceRegistry;
  /** Where this process is reached. */
  readonly address: string;
  /** Campaigns until elected; then the journal, every write fenced by the term. */
  lead(): Promise<{ term: Term; store: Store }>;
  /** Follows the instances of `kind` in the registry, with a channel to the one in use (closed with the member). */
  follow<C extends { close(): void }>(kind: ServiceKind, connect: (address: string) => C, onSwitch?: () => void): Promise<RegistryPeer<C>>;
  /** UNAVAILABLE naming the leader (in the message and the baton-leader trailer), for calls a follower does not serve. */
  notLeader(): BatonError;
  /** Resigns and disconnects. */
  close(): Promise<void>;
}

/** Joins the replica set configured under store.etcd and cluster, registering the services this process runs. */
export async function joinCluster(config: BatonConfig, logger: Logger, options: { address: string; services: ServiceKind[] }): Promise<ClusterMember> {
  const log = logger.child({ component: "cluster" });
  const client = connectEtcd(etcdConnection(config));
  const { prefix } = config.store.etcd;
  const leaderKey = `${prefix}leader`;
  const election = new LeaderElection({ client, key: leaderKey, address: options.address, ttlSeconds: config.cluster.leaseTtlSeconds, recheckMs: config.cluster.recheckMs, logger: log });
  const registry = etcdServiceRegistry(client, { prefix, leaderKey, leaseId: () => election.leaseId(), recheckMs: config.cluster.recheckMs });
  try {
    // A follower's lease can lapse too (etcd unreachable past the TTL): its entries go back on the new one.
    await registerServices(registry, election, { id: instanceId(config), address: options.address, services: options.services, logger: log });
  } catch (err) {
    await election.close();
    client.close();
    throw new BatonError(Code.UNAVAILABLE, `etcd at ${config.store.etcd.endpoints.join(",")} (store.etcd.endpoints) cannot be reached: ${(err as Error).message}`, { cause: err });
  }
  const stores: Store[] = [];
  const peers: Array<{ close(): void }> = [];
  return {
    election,
    registry,
    address: options.address,
    async lead() {
      const term = await election.campaign();
      const store = openEtcdStore(etcdStoreOptions(config, { client, fence: { key: term.key, createRevision: term.createRevision } }));
      stores.push(store);
      return { term, store };
    },
    async follow(kind, connect, onSwitch) {
      const peer = await followRegistryPeer(registry, kind, { connect, logger, ...(onSwitch ? { onSwitch } : {}) });
      peers.push(peer);
      return peer;
    },
    notLeader() {
      const leader = election.leaderAddress;
      const message = leader ? `this coordinator is a follower; the leader is at ${leader}` : "this coordinator is a follower and no leader is elected yet; retry shortly";
      return new BatonError(Code.UNAVAILABLE, message, leader ? { trailers: { [LEADER_TRAILER]: leader } } : {});
    },
    async close() {
      for (const p of peers) p.close();
      for (const s of stores) await s.close();
      await election.close();
      client.close();
    },
  };
}
