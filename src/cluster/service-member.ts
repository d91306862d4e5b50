import { randomBytes } from "node:crypto";
import type { BatonConfig } from "../config.js";
import { BatonError, Code } from "../errors.js";
import type { Logger } from "../logging.js";
import { connectEtcd, etcdConnection } from "../store/index.js";
import { LeaseKeeper } from "./lease-keeper.js";
import { etcdServiceRegistry, type ServiceKind, type ServiceRegistry } from "./service-registry.js";

/**
 * This process's id in the registry: coordinatorId (the same in every process left at its
 * default), the pid and a few random bytes, so that two processes never share a key (the
 * second would overwrite the first, and the first's death would remove the second's entry).
 */
export function instanceId(config: BatonConfig): string {
  return `${config.coordinatorId}-${process.pid}-${randomBytes(3).toString("hex")}`;
}

/** Registers `services` on the lease, and again each time the lease is replaced (the old one's entries went with it). */
export async function registerServices(registry: ServiceRegistry, lease: { onNewLease(fn: () => void): void }, options: { id: string; address: string; services: ServiceKind[]; logger: Logger }): Promise<void> {
  const { id, address, services, logger } = options;
  const registerAll = async () => {
    for (const kind of services) await registry.register({ kind, id, address });
  };
  lease.onNewLease(() => {
    registerAll().then(
      () => logger.info({ id, address, services }, "registered in etcd again, on a new lease"),
      (err: unknown) => logger.warn({ err: (err as Error).message }, "registering again in etcd failed"),
    );
  });
  await registerAll();
  logger.info({ id, address, services }, "registered in etcd");
}

/** A participant that is not a coordinator (a Resource Manager, a Performance Monitor) in the registry. */
export interface ServiceMember {
  readonly registry: ServiceRegistry;
  /** Its registry id. */
  readonly id: string;
  /** Revokes its lease (its entries go at once) and disconnects. */
  close(): Promise<void>;
}

/**
 * Registers the services this process runs in the registry in etcd (store.etcd), on a lease
 * of its own kept alive for as long as the process lives (cluster.leaseTtlSeconds): no
 * election, as only coordinators lead. UNAVAILABLE when etcd cannot be reached.
 */
export async function joinRegistry(config: BatonConfig, logger: Logger, options: { address: string; services: ServiceKind[] }): Promise<ServiceMember> {
  const log = logger.child({ component: "cluster" });
  const client = connectEtcd(etcdConnection(config));
  const { prefix } = config.store.etcd;
  const lease = new LeaseKeeper({ client, ttlSeconds: config.cluster.leaseTtlSeconds, logger: log, retryMs: config.cluster.recheckMs });
  lease.onLost((err) => log.warn({ err: err.message }, "the etcd lease is lost: this process's registry entries are gone until a new lease is granted"));
  const registry = etcdServiceRegistry(client, { prefix, leaderKey: `${prefix}leader`, leaseId: () => lease.leaseId(), recheckMs: config.cluster.recheckMs });
  const id = instanceId(config);
  try {
    await registerServices(registry, lease, { id, address: options.address, services: options.services, logger: log });
  } catch (err) {
    await lease.close();
    client.close();
    throw new BatonError(Code.UNAVAILABLE, `etcd at ${config.store.etcd.endpoints.join(",")} (store.etcd.endpoints) cannot be reached: ${(err as Error).message}`, { cause: err });
  }
  return {
    registry,
    id,
    async close() {
      await lease.close();
      client.close();
    },
  };
}
