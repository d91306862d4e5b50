import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { randomUUID } from "node:crypto";
import { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { ResourceRequestSchema } from "../../gen/baton/v1/common_pb.js";
import type { CallBreaker } from "../breakers/index.js";
import type { ResourceManagerPort } from "../coordinator/index.js";
import { createClient, type Channel } from "../rpc/index.js";

/** A Resource Manager in another process, over mTLS, every call through its breaker. */
export function remoteResourceManager(channel: Channel, breaker: CallBreaker, callTimeoutMs = 5000): ResourceManagerPort {
  const client = createClient(ResourceManager, channel);
  const opts = () => ({ deadline: callTimeoutMs });
  return {
    async register(agentId, resources) {
      await breaker.call(() => client.registerResources({ agentId, resources }, opts()));
    },
    async query(filter) {
      const res = await breaker.call(() => client.query({ requestId: randomUUID(), timestamp: timestampNow(), agentIds: filter.agentIds ?? [] }, opts()));
      return res.resources;
    },
    async reserve(options) {
      const requests = options.requests.map((r) => create(ResourceRequestSchema, r));
      const res = await breaker.call(() => client.reserve({ reservationId: options.reservationId, holder: options.holder, requests }, opts()));
      return res.reservations;
    },
    async release(id) {
      const res = await breaker.call(() => client.release({ reservationId: id }, opts()));
      return res.released;
    },
  };
}
