export { ResourceInventory, type InventoryQuery } from "./inventory.js";
export { createResourceManagerService } from "./resource-manager-service.js";
export { embeddedResourceManager } from "./embedded-port.js";
export { remoteResourceManager } from "./remote-port.js";
