import { addressList } from "./security/index.js";
import type { BatonConfig } from "./config.js";
import { ConfigError, isLoopbackHost, parseListen } from "./config-errors.js";

/** The checks that involve more than one setting, or a setting's format beyond its type and bounds (which the table's checks cover). */
export function validateConfig(c: BatonConfig): void {
  parseListen(c.listen);
  if (c.adminListen) parseListen(c.adminListen, "adminListen");
  if (c.dashboard.enabled === "on" && c.adminListen && !c.dashboard.mutualTls && !isLoopbackHost(parseListen(c.adminListen, "adminListen").host)) {
    throw new ConfigError(`dashboard.enabled is "on" but adminListen ${c.adminListen} is not a loopback address: off loopback the dashboard needs access control; set dashboard.mutualTls (BATON_DASHBOARD_MTLS) so operators present a certificate from tls.caFile, or listen on 127.0.0.1`);
  }
  if (c.dashboard.mutualTls && c.mesh.enabled) throw new ConfigError("dashboard.mutualTls cannot be used with mesh.enabled: behind a mesh the sidecar terminates TLS; keep the admin port on loopback");
  c.resources.forEach((r, i) => {
    if (typeof r !== "object" || !r || typeof r.agentId !== "string" || !r.agentId || typeof r.resourceId !== "string" || !r.resourceId || typeof r.kind !== "string" || typeof r.capacity !== "number" || r.capacity < 0) {
      throw new ConfigError(`resources[${i}] must be { agentId, resourceId, kind, capacity >= 0 }`);
    }
  });
  for (const [name, value, flag] of [["services.resourceManager", c.services.resourceManager, "--resource-manager"], ["services.performanceMonitor", c.services.performanceMonitor, "--performance-monitor"]] as const) {
    if (value === "registry" && c.store.kind !== "etcd") throw new ConfigError(`${name} (${flag}) is "registry": the service registry is in etcd, so it needs store.kind "etcd" (--store etcd://host:port), not "${c.store.kind}"; or give the address, host:port`);
    if (value && value !== "registry") parseListen(value, name);
  }
  if (c.services.only === "all" && (c.services.resourceManager || c.services.performanceMonitor)) throw new ConfigError(`services.only "all" runs the Resource Manager and Performance Monitor here; name their addresses only with --only coordinator`);
  if (c.session.defaultMaxInFlight > c.session.maxInFlightLimit) {
    throw new ConfigError(`session.defaultMaxInFlight (${c.session.defaultMaxInFlight}) exceeds session.maxInFlightLimit (${c.session.maxInFlightLimit})`);
  }
  // A task travels whole in its answers, events and directive, with its history, result and
  // envelope beside it: half a message leaves them room (as 1 MiB does in the 4 MiB default).
  const messageBytes = Math.min(c.transport.maxSendMessageBytes, c.transport.maxReceiveMessageBytes);
  for (const [name, value] of [["limits.maxTaskSpecBytes", c.limits.maxTaskSpecBytes], ["limits.maxHelloBytes", c.limits.maxHelloBytes]] as const) {
    if (value > messageBytes / 2) {
      throw new ConfigError(`${name} (${value}) must be at most half of the smaller of transport.maxSendMessageBytes and transport.maxReceiveMessageBytes (${messageBytes}), so that what is built from it fits a message`);
    }
  }
  if (c.session.outboxCapacity < c.session.maxInFlightLimit) {
    throw new ConfigError(`session.outboxCapacity (${c.session.outboxCapacity}) must hold at least session.maxInFlightLimit (${c.session.maxInFlightLimit}) directives`);
  }
  try {
    addressList(c.transport.maxConnectionsPerAddressExempt);
  } catch (err) {
    throw new ConfigError(`transport.maxConnectionsPerAddressExempt: ${(err as Error).message}`);
  }
  if (c.delivery.backoffInitialMs > c.delivery.backoffMaxMs) throw new ConfigError(`delivery.backoffInitialMs (${c.delivery.backoffInitialMs}) exceeds delivery.backoffMaxMs (${c.delivery.backoffMaxMs})`);
  if (c.tasks.maxAttempts > c.tasks.maxDeliveries) throw new ConfigError(`tasks.maxAttempts (${c.tasks.maxAttempts}) exceeds tasks.maxDeliveries (${c.tasks.maxDeliveries})`);
  if (c.delivery.leaseMs <= c.session.heartbeatIntervalMs) throw new ConfigError(`delivery.leaseMs (${c.delivery.leaseMs}) must exceed session.heartbeatIntervalMs (${c.session.heartbeatIntervalMs})`);
  // The same shape as a key file's lines (store/secret-box.ts); the value is never echoed.
  c.store.key.split(",").forEach((k, i) => {
    if (c.store.key && !/^[A-Za-z0-9+/]{43}=$/.test(k.trim())) throw new ConfigError(`store.key (BATON_JOURNAL_KEY): entry ${i + 1} is not a journal key (base64 of 32 bytes: 44 characters)`);
  });
  if (c.mesh.enabled && c.mesh.trustedPeers.length === 0) throw new ConfigError("mesh.enabled needs mesh.trustedPeers: the sidecar addresses whose x-forwarded-client-cert header is believed");
  try {
    addressList(c.mesh.trustedPeers);
  } catch (err) {
    throw new ConfigError(`mesh.trustedPeers: ${(err as Error).message}`);
  }
  if (!/^[A-Za-z0-9._-]+$/.test(c.tls.trustDomain)) throw new ConfigError(`tls.trustDomain ${JSON.stringify(c.tls.trustDomain)} is not a valid SPIFFE trust domain`);
}
