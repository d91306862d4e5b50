export { createConnectionMetrics, createCoordinatorMetrics, type CoordinatorMetrics } from "./metrics.js";
export { startAdminServer, type AdminServer } from "./admin-server.js";
export { createGrpcServerMetrics } from "./grpc-metrics.js";
export { createOperationsMetrics } from "./ops-metrics.js";
export { PerformanceStore, createPerformanceMonitorService } from "./performance-monitor.js";
export { remotePerformanceMonitor } from "./remote-sink.js";
