import type { ResourceRequest, Resource } from "../../gen/baton/v1/common_pb.js";
import type { MetricsRequest, MetricsUpdate, PerformanceReport, SystemMetrics } from "../../gen/baton/v1/performance_monitor_pb.js";
import type { Reservation, ResourceState } from "../../gen/baton/v1/resource_manager_pb.js";

/** The Resource Manager as the coordinator uses it: embedded, or another process over mTLS. */
export interface ResourceManagerPort {
  register(agentId: string, resources: Resource[]): Promise<void>;
  query(filter: { agentIds?: string[] }): Promise<ResourceState[]>;
  reserve(options: { reservationId: string; holder: string; requests: ResourceRequest[]; agentId?: string }): Promise<Reservation[]>;
  release(reservationId: string): Promise<boolean>;
}

/** The Performance Monitor as the coordinator reports to it. */
export interface PerformanceSink {
  metrics(request: MetricsRequest): Promise<SystemMetrics>;
  recordUpdate(update: MetricsUpdate): void;
  recordDirective(agentId: string, ok: boolean): void;
  recordReport(report: PerformanceReport): void;
}
