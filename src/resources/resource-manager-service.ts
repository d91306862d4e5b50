import { durationMs, timestampNow } from "@bufbuild/protobuf/wkt";
import type { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { unimplemented } from "../errors.js";
import type { ServiceImpl } from "../rpc/index.js";
import type { ResourceInventory } from "./inventory.js";

/** The ResourceManager service over an inventory (embedded in baton serve by default). */
export function createResourceManagerService(inventory: ResourceInventory): ServiceImpl<typeof ResourceManager> {
  return {
    async query(req) {
      return { $typeName: "baton.v1.ResourceStatus", requestId: req.requestId, timestamp: timestampNow(), resources: inventory.query({ resourceIds: req.resourceIds, agentIds: req.agentIds, kinds: req.kinds }) };
    },
    async reserve(req) {
      if (req.ttl && durationMs(req.ttl) > 0) throw unimplemented("reservation ttl is not supported yet: reserve without one and release explicitly");
      return { $typeName: "baton.v1.ReserveResponse", reservations: inventory.reserve({ reservationId: req.reservationId, holder: req.holder, requests: req.requests, expectedVersions: req.expectedVersions }) };
    },
    async release(req) {
      return { $typeName: "baton.v1.ReleaseResponse", released: inventory.release(req.reservationId) };
    },
    async registerResources(req) {
      return { $typeName: "baton.v1.RegisterResourcesResponse", resources: inventory.register(req.agentId, req.resources) };
    },
  };
}
