export { createAdminDashboard, type AdminDashboard, type AdminDashboardOptions, type DashboardAccess } from "./admin-dashboard.js";
export type { Dashboard } from "./dashboard.js";
export { ACTION_HEADER } from "./caller.js";
