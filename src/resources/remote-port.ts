import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { randomUUID } from "node:crypto";
import { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { ResourceRequestSchema, type Resource } from "../../gen/baton/v1/common_pb.js";
import type { CallBreaker } from "../breakers/index.js";
import type { ResourceManagerPort } from "../coordinator/index.js";
import { Code, toBatonError } from "../errors.js";
import type { Logger } from "../logging.js";
import { createClient, type Channel, type ServiceClient } from "../rpc/index.js";

/** Where calls go now when the Resource Manager is found, not configured: a channel to one instance, and which instance. */
export type ResourceManagerTarget = () => { channel: Channel; instance: string };

type Reserve = Parameters<ResourceManagerPort["reserve"]>[0];
type Client = ServiceClient<typeof ResourceManager>;
/** An instance taken into use: calls wait for `ready` (it has been reconciled) before they go to it. */
type InUse = { instance: string; channel: Channel; client: Client; ready: Promise<void> };

// What an RM answers for a reservation it cannot honour: ABORTED here (capacity taken, resource not offered); other RMs may say it with these.
const REFUSALS = new Set<number>([Code.ABORTED, Code.FAILED_PRECONDITION, Code.RESOURCE_EXHAUSTED]);
const refused = (err: unknown) => REFUSALS.has(toBatonError(err).code);

/**
 * A Resource Manager in another process, over mTLS, every call through its breaker. Given
 * a target rather than a channel, the instance is resolved on each call (inside the
 * breaker, so "none registered" counts as a failure), and an instance newly taken into use
 * (a new one, or one used before) is first reconciled with what this coordinator holds:
 * each agent's latest inventory, the reservations it holds that were released meanwhile
 * released, those it lacks reserved. A new instance starts empty, and without its
 * inventory no task that needs a resource could be placed.
 */
export function remoteResourceManager(target: Channel | ResourceManagerTarget, breaker: CallBreaker, logger: Logger, callTimeoutMs = 5000): ResourceManagerPort {
  const opts = () => ({ deadline: callTimeoutMs });
  const log = logger.child({ component: "resource-manager-port" });
  const inventories = new Map<string, Resource[]>();
  const reservations = new Map<string, Reserve>();
  const reserveOn = (client: Client, r: Reserve) => client.reserve({ reservationId: r.reservationId, holder: r.holder, requests: r.requests.map((q) => create(ResourceRequestSchema, q)) }, opts());
  const fixed: InUse | undefined = typeof target === "function" ? undefined : { instance: "", channel: target, client: createClient(ResourceManager, target), ready: Promise.resolve() };
  let inUse = fixed;

  /** A reservation the instance refused: the directive holds it no longer. */
  const drop = (r: Reserve, instance: string, err: unknown) => {
    if (reservations.get(r.reservationId) === r) reservations.delete(r.reservationId);
    log.warn({ reservation_id: r.reservationId, holder: r.holder, instance, err: toBatonError(err).message }, "the resource manager refused a reservation replayed to it: it is dropped");
  };

  const reconcile = async (client: Client, instance: string) => {
    await Promise.all([...inventories].map(([agentId, resources]) => client.registerResources({ agentId, resources }, opts())));
    // An instance used before still holds what was released while another was in use.
    const status = await client.query({ requestId: randomUUID(), timestamp: timestampNow() }, opts());
    const held = new Set(status.resources.flatMap((s) => s.reservations.map((r) => r.reservationId)));
    await Promise.all([...held].filter((id) => !reservations.has(id)).map((id) => client.release({ reservationId: id, reason: "rollback" }, opts())));
    // Any other failure (UNAVAILABLE, DEADLINE_EXCEEDED) fails the reconcile: the reservation is still held, and the next call tries again (reserve is idempotent by id).
    await Promise.all([...reservations.values()].filter((r) => !held.has(r.reservationId)).map((r) => reserveOn(client, r).catch((err: unknown) => (refused(err) ? drop(r, instance, err) : Promise.reject(err)))));
  };

  const inUseNow = async (): Promise<InUse> => {
    if (!fixed) {
      const { channel, instance } = (target as ResourceManagerTarget)();
      if (inUse?.instance !== instance || inUse.channel !== channel) {
        const client = createClient(ResourceManager, channel);
        const taken: InUse = { instance, channel, client, ready: reconcile(client, instance) };
        inUse = taken;
        // A reconcile that failed is tried again by the next call.
        taken.ready.catch(() => inUse === taken && (inUse = undefined));
      }
    }
    const now = inUse!;
    await now.ready;
    return now;
  };

  return {
    async register(agentId, resources) {
      if (!fixed) inventories.set(agentId, resources);
      await breaker.call(async () => (await inUseNow()).client.registerResources({ agentId, resources }, opts()));
    },
    async query(filter) {
      const res = await breaker.call(async () => (await inUseNow()).client.query({ requestId: randomUUID(), timestamp: timestampNow(), agentIds: filter.agentIds ?? [] }, opts()));
      return res.resources;
    },
    async reserve(options) {
      let used: InUse | undefined;
      const send = () =>
        breaker.call(async () => {
          const now = await inUseNow();
          used = now;
          return reserveOn(now.client, options);
        });
      const res = await send();
      if (fixed) return res.reservations;
      reservations.set(options.reservationId, options);
      // Answered by an instance no longer in use: the one in use now may have been reconciled without it.
      while (used !== inUse && reservations.get(options.reservationId) === options) {
        const current = inUse;
        try {
          await send();
        } catch (err) {
          if (refused(err)) {
            drop(options, used?.instance ?? "", err);
            throw err;
          }
          // Not reached now: the next call reconciles the instance in use then, and this reservation with it.
          if (inUse === current || inUse === used) inUse = undefined;
          break;
        }
      }
      return res.reservations;
    },
    async release(id) {
      reservations.delete(id);
      const res = await breaker.call(async () => (await inUseNow()).client.release({ reservationId: id }, opts()));
      return res.released;
    },
  };
}
