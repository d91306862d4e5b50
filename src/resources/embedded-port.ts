import type { ResourceManagerPort } from "../coordinator/index.js";
import type { ResourceInventory } from "./inventory.js";

/** The Resource Manager in the coordinator's own process. */
export function embeddedResourceManager(inventory: ResourceInventory): ResourceManagerPort {
  return {
    async register(agentId, resources) {
      inventory.register(agentId, resources);
    },
    async query(filter) {
      return inventory.query(filter);
    },
    async reserve(options) {
      return inventory.reserve(options);
    },
    async release(id) {
      return inventory.release(id);
    },
  };
}
