export { createCoordinatorMetrics, type CoordinatorMetrics } from "./metrics.js";
export { startAdminServer, type AdminServer } from "./admin-server.js";
