import type { SecureContextOptions, TlsOptions } from "node:tls";
import type { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import type { SystemMetrics } from "../../gen/baton/v1/performance_monitor_pb.js";
import { isLoopbackHost, parseListen, type BatonConfig } from "../config.js";
import type { EventLog } from "../events/index.js";
import type { Logger } from "../logging.js";
import { readTlsFiles, type CallGuard, type PeerInfo, type ServiceImpl } from "../rpc/index.js";
import type { Policy, SpiffeIdentity } from "../security/index.js";
import type { CallerMode } from "./caller.js";
import { createDashboard, type Dashboard } from "./dashboard.js";
import { createStaticFiles, defaultStaticDir } from "./static-files.js";

/** The server's access control, as the dashboard uses it: the same policy, guard and authentication as gRPC. */
export interface DashboardAccess {
  readonly policy: Policy;
  readonly guard: CallGuard;
  authenticate(peer: PeerInfo, headers: ReadonlyMap<string, string>): SpiffeIdentity;
}

/** What the dashboard is built from, once the coordinator has started. */
export interface AdminDashboardOptions {
  config: BatonConfig;
  control: ServiceImpl<typeof Control>;
  events: EventLog;
  coordinator: { reportedUtilization(agentId: string): number | undefined; taskCounts(): Map<TaskState, number> };
  /** The Performance Monitor's figures, when it runs in this process. */
  metrics?: () => SystemMetrics;
  access: DashboardAccess;
  logger: Logger;
  /** Where the built page is; by default the package's dashboard/dist. */
  staticDir?: string;
}

/** The dashboard and how the admin port must listen for it. */
export interface AdminDashboard {
  dashboard: Dashboard;
  /** With dashboard.mutualTls: the admin port serves HTTPS with these options (client certificates asked for, checked per route). */
  tls: (TlsOptions & SecureContextOptions) | undefined;
  /** "http" or "https". */
  scheme: "http" | "https";
}

/**
 * The dashboard for this configuration, or undefined when it is off: off by configuration,
 * or on a non-loopback admin address without mutual TLS (config refuses "on" there).
 */
export function createAdminDashboard(options: AdminDashboardOptions): AdminDashboard | undefined {
  const { config, logger } = options;
  const log = logger.child({ component: "dashboard" });
  if (!config.adminListen || config.dashboard.enabled === "off") return undefined;
  const { host } = parseListen(config.adminListen, "adminListen");
  const { mutualTls } = config.dashboard;
  if (!mutualTls && !isLoopbackHost(host)) {
    log.warn({ admin: config.adminListen }, "dashboard off: adminListen is not a loopback address and dashboard.mutualTls is not set");
    return undefined;
  }
  let tls: AdminDashboard["tls"];
  let mode: CallerMode;
  if (mutualTls) {
    const files = readTlsFiles(config.tls);
    // Asked for, not required of every connection: /metrics and the probes stay reachable; the dashboard checks per request.
    tls = { ca: files.ca, cert: files.cert, key: files.key, requestCert: true, rejectUnauthorized: false, minVersion: "TLSv1.2" };
    mode = { kind: "mutual-tls", authenticate: (peer, headers) => options.access.authenticate(peer, headers) };
  } else {
    mode = { kind: "loopback", trustDomain: config.tls.trustDomain };
  }
  const dashboard = createDashboard({
    control: options.control,
    events: options.events,
    utilization: (id) => options.coordinator.reportedUtilization(id),
    taskCounts: () => options.coordinator.taskCounts(),
    metrics: options.metrics,
    mode,
    guard: options.access.guard,
    policy: options.access.policy,
    files: createStaticFiles(options.staticDir ?? defaultStaticDir()),
    pulseMs: config.dashboard.pulseMs,
    logger: log,
  });
  return { dashboard, tls, scheme: mutualTls ? "https" : "http" };
}
