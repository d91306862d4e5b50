import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { randomUUID } from "node:crypto";
import { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { ResourceRequestSchema, type Resource } from "../../gen/baton/v1/common_pb.js";
import type { CallBreaker } from "../breakers/index.js";
import type { ResourceManagerPort } from "../coordinator/index.js";
import { createClient, type Channel, type ServiceClient } from "../rpc/index.js";

/** Where calls go now when the Resource Manager is found, not configured: a channel to one instance, and which instance. */
export type ResourceManagerTarget = () => { channel: Channel; instance: string };

type Reserve = Parameters<ResourceManagerPort["reserve"]>[0];

/**
 * A Resource Manager in another process, over mTLS, every call through its breaker. Given
 * a target rather than a channel, the instance is resolved on each call (inside the
 * breaker, so "none registered" counts as a failure), and a new instance is first sent
 * what the old one held as far as this coordinator knows: each agent's latest inventory,
 * then the reservations not yet released. A new instance starts empty, and without its
 * inventory no task that needs a resource could be placed.
 */
export function remoteResourceManager(target: Channel | ResourceManagerTarget, breaker: CallBreaker, callTimeoutMs = 5000): ResourceManagerPort {
  const opts = () => ({ deadline: callTimeoutMs });
  const inventories = new Map<string, Resource[]>();
  const reservations = new Map<string, Reserve>();
  let synced: { instance: string; client: ServiceClient<typeof ResourceManager>; ready: Promise<void> } | undefined;
  const fixed = typeof target === "function" ? undefined : createClient(ResourceManager, target);

  const clientNow = async (): Promise<ServiceClient<typeof ResourceManager>> => {
    if (fixed) return fixed;
    const { channel, instance } = (target as ResourceManagerTarget)();
    if (synced?.instance !== instance) {
      const client = createClient(ResourceManager, channel);
      const replay = async () => {
        await Promise.all([...inventories].map(([agentId, resources]) => client.registerResources({ agentId, resources }, opts())));
        // A reservation the new instance refuses (its capacity moved meanwhile) is dropped: the directive holds it no longer.
        await Promise.all([...reservations.values()].map((r) => client.reserve({ reservationId: r.reservationId, holder: r.holder, requests: r.requests.map((q) => create(ResourceRequestSchema, q)) }, opts()).catch(() => reservations.delete(r.reservationId))));
      };
      synced = { instance, client, ready: replay() };
      // A replay that failed is tried again by the next call.
      synced.ready.catch(() => synced?.instance === instance && (synced = undefined));
    }
    const { client, ready } = synced;
    await ready;
    return client;
  };

  return {
    async register(agentId, resources) {
      if (!fixed) inventories.set(agentId, resources);
      await breaker.call(async () => (await clientNow()).registerResources({ agentId, resources }, opts()));
    },
    async query(filter) {
      const res = await breaker.call(async () => (await clientNow()).query({ requestId: randomUUID(), timestamp: timestampNow(), agentIds: filter.agentIds ?? [] }, opts()));
      return res.resources;
    },
    async reserve(options) {
      const requests = options.requests.map((r) => create(ResourceRequestSchema, r));
      const res = await breaker.call(async () => (await clientNow()).reserve({ reservationId: options.reservationId, holder: options.holder, requests }, opts()));
      if (!fixed) reservations.set(options.reservationId, options);
      return res.reservations;
    },
    async release(id) {
      reservations.delete(id);
      const res = await breaker.call(async () => (await clientNow()).release({ reservationId: id }, opts()));
      return res.released;
    },
  };
}
