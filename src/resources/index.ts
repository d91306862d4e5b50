export { ResourceInventory, type InventoryQuery } from "./inventory.js";
export { createResourceManagerService } from "./resource-manager-service.js";
