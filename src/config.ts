import { readFileSync } from "node:fs";
import { DEFAULT_CONNECTION_LIMITS, DEFAULT_TRANSPORT_LIMITS, type ConnectionLimits, type TransportLimits } from "./rpc/index.js";
import { DEFAULT_PAYLOAD_LIMITS, type PayloadLimits } from "./protocol/index.js";
import { addressList } from "./security/index.js";

/** The whole configuration of a baton process: one typed object. */
export interface BatonConfig {
  /** This coordinator's id, in logs, Welcome and reports. Default "baton-coordinator". */
  coordinatorId: string;
  /** Where the gRPC server listens, "host:port". Default "127.0.0.1:50051"; port 0 picks a free one. */
  listen: string;
  /** Mutual TLS. */
  tls: {
    /** SPIFFE trust domain of every identity. Default "baton.local". */
    trustDomain: string;
    /** Folder of the development certificates. Default "certs". */
    certsDir: string;
    /** CA bundle that client certificates must chain to. Default "<certsDir>/ca.pem". */
    caFile: string;
    /** The server's certificate. Default "<certsDir>/coordinator.pem". */
    certFile: string;
    /** The server's private key. Default "<certsDir>/coordinator.key". */
    keyFile: string;
    /** Make the CA, server and operator certificates when missing (development). Default false. */
    devCerts: boolean;
    /** Deny list of revoked certificate serials (`baton certs revoke`). Default "<certsDir>/revoked.json". */
    revokedFile: string;
    /** How often the certificate files and the deny list are checked for changes, ms. Default 5000. */
    reloadIntervalMs: number;
  };
  /** Authorization and message security. */
  security: {
    /** JSON policy overriding the default roles -> capabilities, role by role; "" keeps the default. */
    policyFile: string;
    /** "required" (the spec: batches signed with HMAC-SHA256 both ways, sensitive input sealed) or "off". Default "required". */
    messageSecurity: "required" | "off";
    /** How long a session's message key signs new messages before it is rotated, ms. Default 24 h. */
    keyRotationMs: number;
    /** How long the previous key is still accepted after a rotation, ms. Default 1 h. */
    keyGraceMs: number;
    /** How far a signed batch's timestamp may be from now, either way, ms. Default 5 min. */
    replayWindowMs: number;
  };
  /** Behind a service mesh: the sidecar terminates mTLS and names the caller in x-forwarded-client-cert. */
  mesh: {
    /** Listen in plaintext and take identities from trusted sidecars. Default false. */
    enabled: boolean;
    /** Addresses or CIDR ranges of the sidecars whose header is believed ("127.0.0.1", "10.0.0.0/8"). */
    trustedPeers: string[];
  };
  /** The agent session. */
  session: {
    /** How often each side sends a heartbeat, ms. Default 5000. */
    heartbeatIntervalMs: number;
    /** Heartbeats an agent may miss before its session is closed. Default 3. */
    heartbeatMisses: number;
    /** How long an agent has to send Hello after opening Connect, ms. Default 10000. */
    helloTimeoutMs: number;
    /** How long a status request waits for the agent's answer, ms. Default 5000. */
    statusTimeoutMs: number;
    /** The spec's state_consistency sync_interval, ms: agents push their status at most this often, and a round asks only agents whose status is older. Default 100. */
    syncIntervalMs: number;
    /** How long the coordinator waits for a DirectiveAck, ms. Default 10000. */
    ackTimeoutMs: number;
    /** In-flight cap for an agent whose Hello asks for 0. Default 16. */
    defaultMaxInFlight: number;
    /** Largest in-flight cap granted. Default 1000. */
    maxInFlightLimit: number;
    /** Messages queued for one agent before it is cut off as too slow. Default 10000. */
    outboxCapacity: number;
    /** Most coordinator messages batched into one stream message. Default 256. */
    maxBatch: number;
    /** How long a disconnected agent may resume before it is lost (offline, work replanned), ms. Default 15000. */
    disconnectGraceMs: number;
  };
  /** Delivery of directives (the spec: ack_required, retry_count 3, retry_delay exponential). */
  delivery: {
    /** Resends of an unacked directive before the agent is given up on. Default 3. */
    retryCount: number;
    /** First resend delay, ms, doubled each time with jitter. Default 500. */
    backoffInitialMs: number;
    /** Longest resend delay, ms. Default 10000. */
    backoffMaxMs: number;
    /** How long an accepted directive runs without progress before it is given up, ms. Default 60000. */
    leaseMs: number;
  };
  /** Agent circuit breakers (opossum). */
  breaker: {
    /** How long an open breaker waits before one probe, ms. Default 30000. */
    resetTimeoutMs: number;
    /** Failure percentage that opens it. Default 50. */
    errorThresholdPercentage: number;
    /** Deliveries in the window before the percentage counts. Default 10. */
    volumeThreshold: number;
    /** Rolling window, ms. Default 60000. */
    rollingCountTimeoutMs: number;
  };
  /** Tasks. */
  tasks: {
    /** Attempts per task (directive_failed, lease expiry, rejection) before it is dead-lettered. Default 3. */
    maxAttempts: number;
    /** Deliveries per task whatever the cause (agents lost, deferrals) before it is dead-lettered. Default 20. */
    maxDeliveries: number;
    /** Delay before a failed task is retried, ms, doubled per failure. Default 200. */
    retryDelayMs: number;
    /** How long every member of a coalition has to accept, ms, unless the task says. Default 5000. */
    coalitionFormationMs: number;
    /** Tasks not yet ended (pending, assigned or running) the coordinator holds; a submit or resubmit beyond is RESOURCE_EXHAUSTED. Default 100000. */
    maxOpen: number;
    /** Bytes of those tasks' specs (input included, as encoded), at most; a submit beyond is RESOURCE_EXHAUSTED. Default 268435456 (256 MiB). */
    maxOpenBytes: number;
    /** Tasks one Control.SubmitTasks call may carry (the call is also bounded by transport.maxReceiveMessageBytes). Default 1000. */
    maxBulk: number;
    /** Least time between two task.<id>.progress events of one task, ms: a chatty agent cannot flood watchers, and the latest progress is always delivered. 0 publishes every report. Default 250. */
    progressEventIntervalMs: number;
  };
  /** The journal. */
  store: {
    /** "sqlite" (durable, the default) or "memory" (nothing survives a restart). */
    kind: "sqlite" | "memory";
    /** Folder of the SQLite journal, its state file and the lock that keeps a second server out. Default "data". */
    dataDir: string;
    /** SQLite synchronous mode: FULL survives power loss, NORMAL a process crash. Default "FULL". */
    synchronous: "FULL" | "NORMAL";
    /** The key file that seals tasks' sensitive_input at rest (AES-256-GCM): base64 of 32 bytes a line, the first sealing, any others older keys still read. Default "<certsDir>/journal.key". */
    keyFile: string;
    /** The same keys given directly, base64, comma-separated (BATON_JOURNAL_KEY); when set, keyFile is not read. Default "". */
    key: string;
  };
  /**
   * grpc-js transport limits, and the listener's limits on connections before grpc-js sees
   * them: tlsHandshakeTimeoutMs (5000), prefaceTimeoutMs (5000), maxConnections (20000),
   * maxConnectionsPerAddress (1000), maxConnectionsPerAddressExempt (loopback).
   */
  transport: TransportLimits & ConnectionLimits;
  /**
   * What the server accepts, sized so that every answer, event and directive built from it
   * fits a transport message: maxTaskSpecBytes (1 MiB: a task's spec serialized, input and
   * sensitive_input included), maxHelloBytes (16 KiB), maxHelloCapabilities (256),
   * maxHelloLabels (64), maxHelloResources (256). Ids and names are at most 256 characters
   * and reasons 16384, whatever these say (src/rpc/validate.ts).
   */
  limits: PayloadLimits;
  /** Logging. */
  log: {
    /** pino level. Default "info". */
    level: string;
    /** Level of the per-message protocol log lines ("info" or "debug"). Default "debug": about ten lines a task stay off the hot path; state changes stay at info. */
    protocolLevel: "info" | "debug";
  };
  /** How long shutdown waits for calls to finish before forcing, ms. Default 5000. */
  shutdownGraceMs: number;
  /** On SIGTERM, how long in-flight directives may run to their completion before the server stops anyway (forcing), ms; no new work is placed meanwhile. Default 30000. */
  drainGraceMs: number;
  /** The admin HTTP endpoint (Prometheus /metrics, /healthz), "host:port"; "" turns it off. Default "127.0.0.1:9464". */
  adminListen: string;
  /** The operators' web dashboard, served on the admin port (adminListen) at /dashboard/. */
  dashboard: {
    /** "auto" (default): on when adminListen is a loopback address or dashboard.mutualTls is set, off otherwise; "on" (refused at start off loopback without mutualTls); "off". */
    enabled: "auto" | "on" | "off";
    /** Serve the admin port over HTTPS (tls.certFile, tls.keyFile) and require, for the dashboard, a client certificate from tls.caFile whose role the policy lets read and act (operators). Default false. */
    mutualTls: boolean;
    /** How often an open dashboard is sent the agents' figures, rounds and metrics, ms. Default 2000. */
    pulseMs: number;
  };
  /** Resources offered from configuration rather than an agent's Hello (a shared GPU, a license pool). Default none. */
  resources: Array<{ agentId: string; resourceId: string; kind: string; capacity: number }>;
  /** Which participants this process runs, and where the others are. */
  services: {
    /** "all" (default: coordinator, Resource Manager and Performance Monitor in one process), "coordinator", "resource-manager" or "performance-monitor". */
    only: "all" | "coordinator" | "resource-manager" | "performance-monitor";
    /** A Resource Manager in another process ("localhost:50052"), reached over mTLS through a breaker; "" embeds it. */
    resourceManager: string;
    /** A Performance Monitor in another process; "" embeds it. */
    performanceMonitor: string;
  };
}

/** A partial configuration, as a file, the environment or flags give it. */
export type ConfigOverrides = {
  [K in keyof BatonConfig]?: BatonConfig[K] extends object ? Partial<BatonConfig[K]> : BatonConfig[K];
};

/** The embedded defaults: one process, development certificates in ./certs. */
export function defaultConfig(): BatonConfig {
  return {
    coordinatorId: "baton-coordinator",
    listen: "127.0.0.1:50051",
    tls: {
      trustDomain: "baton.local",
      certsDir: "certs",
      caFile: "",
      certFile: "",
      keyFile: "",
      devCerts: false,
      revokedFile: "",
      reloadIntervalMs: 5000,
    },
    security: { policyFile: "", messageSecurity: "required", keyRotationMs: 24 * 60 * 60 * 1000, keyGraceMs: 60 * 60 * 1000, replayWindowMs: 5 * 60 * 1000 },
    mesh: { enabled: false, trustedPeers: [] },
    session: {
      heartbeatIntervalMs: 5000,
      heartbeatMisses: 3,
      helloTimeoutMs: 10_000,
      statusTimeoutMs: 5000,
      syncIntervalMs: 100,
      ackTimeoutMs: 10_000,
      defaultMaxInFlight: 16,
      maxInFlightLimit: 1000,
      outboxCapacity: 10_000,
      maxBatch: 256,
      disconnectGraceMs: 15_000,
    },
    delivery: { retryCount: 3, backoffInitialMs: 500, backoffMaxMs: 10_000, leaseMs: 60_000 },
    breaker: { resetTimeoutMs: 30_000, errorThresholdPercentage: 50, volumeThreshold: 10, rollingCountTimeoutMs: 60_000 },
    tasks: { maxAttempts: 3, maxDeliveries: 20, retryDelayMs: 200, coalitionFormationMs: 5000, maxOpen: 100_000, maxOpenBytes: 256 * 1024 * 1024, maxBulk: 1000, progressEventIntervalMs: 250 },
    store: { kind: "sqlite", dataDir: "data", synchronous: "FULL", keyFile: "", key: "" },
    transport: { ...DEFAULT_TRANSPORT_LIMITS, ...DEFAULT_CONNECTION_LIMITS, maxConnectionsPerAddressExempt: [...DEFAULT_CONNECTION_LIMITS.maxConnectionsPerAddressExempt] },
    limits: { ...DEFAULT_PAYLOAD_LIMITS },
    log: { level: "info", protocolLevel: "debug" },
    shutdownGraceMs: 5000,
    drainGraceMs: 30_000,
    adminListen: "127.0.0.1:9464",
    dashboard: { enabled: "auto", mutualTls: false, pulseMs: 2000 },
    services: { only: "all", resourceManager: "", performanceMonitor: "" },
    resources: [],
  };
}

/** A configuration that cannot work; the message says which setting and why. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

type Kind = "string" | "int" | "bool" | "list";

// Environment variables: one table, so names and types stay in one place.
const ENV: Array<[string, string, Kind]> = [
  ["BATON_COORDINATOR_ID", "coordinatorId", "string"],
  ["BATON_LISTEN", "listen", "string"],
  ["BATON_TRUST_DOMAIN", "tls.trustDomain", "string"],
  ["BATON_CERTS_DIR", "tls.certsDir", "string"],
  ["BATON_TLS_CA", "tls.caFile", "string"],
  ["BATON_TLS_CERT", "tls.certFile", "string"],
  ["BATON_TLS_KEY", "tls.keyFile", "string"],
  ["BATON_DEV_CERTS", "tls.devCerts", "bool"],
  ["BATON_REVOKED_FILE", "tls.revokedFile", "string"],
  ["BATON_TLS_RELOAD_MS", "tls.reloadIntervalMs", "int"],
  ["BATON_POLICY_FILE", "security.policyFile", "string"],
  ["BATON_MESSAGE_SECURITY", "security.messageSecurity", "string"],
  ["BATON_KEY_ROTATION_MS", "security.keyRotationMs", "int"],
  ["BATON_REPLAY_WINDOW_MS", "security.replayWindowMs", "int"],
  ["BATON_MESH", "mesh.enabled", "bool"],
  ["BATON_MESH_TRUSTED_PEERS", "mesh.trustedPeers", "list"],
  ["BATON_HEARTBEAT_INTERVAL_MS", "session.heartbeatIntervalMs", "int"],
  ["BATON_HEARTBEAT_MISSES", "session.heartbeatMisses", "int"],
  ["BATON_STATUS_TIMEOUT_MS", "session.statusTimeoutMs", "int"],
  ["BATON_SYNC_INTERVAL_MS", "session.syncIntervalMs", "int"],
  ["BATON_ACK_TIMEOUT_MS", "session.ackTimeoutMs", "int"],
  ["BATON_MAX_TASK_SPEC_BYTES", "limits.maxTaskSpecBytes", "int"],
  ["BATON_LOG_LEVEL", "log.level", "string"],
  ["BATON_DATA_DIR", "store.dataDir", "string"],
  ["BATON_STORE", "store.kind", "string"],
  ["BATON_JOURNAL_KEY", "store.key", "string"],
  ["BATON_JOURNAL_KEY_FILE", "store.keyFile", "string"],
  ["BATON_DISCONNECT_GRACE_MS", "session.disconnectGraceMs", "int"],
  ["BATON_RETRY_COUNT", "delivery.retryCount", "int"],
  ["BATON_LEASE_MS", "delivery.leaseMs", "int"],
  ["BATON_BREAKER_RESET_MS", "breaker.resetTimeoutMs", "int"],
  ["BATON_MAX_ATTEMPTS", "tasks.maxAttempts", "int"],
  ["BATON_MAX_OPEN_TASKS", "tasks.maxOpen", "int"],
  ["BATON_MAX_OPEN_TASK_BYTES", "tasks.maxOpenBytes", "int"],
  ["BATON_SHUTDOWN_GRACE_MS", "shutdownGraceMs", "int"],
  ["BATON_DRAIN_GRACE_MS", "drainGraceMs", "int"],
  ["BATON_PROGRESS_EVENT_INTERVAL_MS", "tasks.progressEventIntervalMs", "int"],
  ["BATON_ADMIN_LISTEN", "adminListen", "string"],
  ["BATON_DASHBOARD", "dashboard.enabled", "string"],
  ["BATON_DASHBOARD_MTLS", "dashboard.mutualTls", "bool"],
  ["BATON_ONLY", "services.only", "string"],
  ["BATON_RESOURCE_MANAGER", "services.resourceManager", "string"],
  ["BATON_PERFORMANCE_MONITOR", "services.performanceMonitor", "string"],
  ["BATON_TLS_HANDSHAKE_TIMEOUT_MS", "transport.tlsHandshakeTimeoutMs", "int"],
  ["BATON_PREFACE_TIMEOUT_MS", "transport.prefaceTimeoutMs", "int"],
  ["BATON_MAX_CONNECTIONS", "transport.maxConnections", "int"],
  ["BATON_MAX_CONNECTIONS_PER_ADDRESS", "transport.maxConnectionsPerAddress", "int"],
];

function parseValue(raw: string, kind: Kind, source: string): string | number | boolean | string[] {
  if (kind === "string") return raw;
  if (kind === "list") return raw.split(",").map((v) => v.trim()).filter(Boolean);
  if (kind === "bool") {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new ConfigError(`${source}: expected true or false, got ${JSON.stringify(raw)}`);
  }
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${source}: expected a whole number, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) {
    node[part] ??= {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts.at(-1)!] = value;
}

/** Overrides from BATON_* environment variables. */
export function configFromEnv(env: Record<string, string | undefined>): ConfigOverrides {
  const out: Record<string, unknown> = {};
  for (const [name, path, kind] of ENV) {
    const raw = env[name];
    if (raw === undefined || (raw === "" && !EMPTY_IS_A_VALUE.has(name))) continue;
    setPath(out, path, parseValue(raw, kind, name));
  }
  return out as ConfigOverrides;
}

// For these "" is a setting (it turns the endpoint off, as documented), not "unset".
const EMPTY_IS_A_VALUE = new Set(["BATON_ADMIN_LISTEN"]);

// The `baton serve` flags that set a configuration path, for messages that say how to change it.
const FLAGS: Record<string, string> = {
  coordinatorId: "--coordinator-id",
  listen: "--listen",
  adminListen: "--admin-listen",
  "tls.certsDir": "--certs-dir",
  "tls.trustDomain": "--trust-domain",
  "tls.devCerts": "--dev-certs",
  "log.level": "--log-level",
  "services.only": "--only",
  "services.resourceManager": "--resource-manager",
  "services.performanceMonitor": "--performance-monitor",
};

/** Every way to set a configuration path, for error messages: "--listen / BATON_LISTEN / listen in the config file". */
export function whereToSet(path: string): string {
  const env = ENV.find(([, p]) => p === path)?.[0];
  return [FLAGS[path], env, `${path} in the config file`].filter(Boolean).join(" / ");
}

/** Overrides from a JSON file shaped like BatonConfig. */
export function configFromFile(path: string): ConfigOverrides {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not an object");
    return value as ConfigOverrides;
  } catch (err) {
    throw new ConfigError(`config file ${path} is not a JSON object: ${(err as Error).message}`);
  }
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>, path: string): void {
  for (const [key, value] of Object.entries(over)) {
    const where = path ? `${path}.${key}` : key;
    if (!(key in base)) throw new ConfigError(`unknown setting ${where}`);
    const current = base[key];
    if (Array.isArray(current)) {
      if (!Array.isArray(value)) throw new ConfigError(`${where} must be a list`);
      base[key] = value;
    } else if (current !== null && typeof current === "object") {
      if (typeof value !== "object" || value === null) throw new ConfigError(`${where} must be an object`);
      merge(current as Record<string, unknown>, value as Record<string, unknown>, where);
    } else {
      if (typeof value !== typeof current) throw new ConfigError(`${where} must be a ${typeof current}, got ${JSON.stringify(value)}`);
      base[key] = value;
    }
  }
}

/** Defaults, then each layer in order (file, environment, flags); validated. */
export function buildConfig(...layers: ConfigOverrides[]): BatonConfig {
  const config = defaultConfig();
  for (const layer of layers) merge(config as unknown as Record<string, unknown>, layer as Record<string, unknown>, "");
  const dir = config.tls.certsDir;
  config.tls.caFile ||= `${dir}/ca.pem`;
  config.tls.certFile ||= `${dir}/coordinator.pem`;
  config.tls.keyFile ||= `${dir}/coordinator.key`;
  config.tls.revokedFile ||= `${dir}/revoked.json`;
  config.store.keyFile ||= `${dir}/journal.key`;
  validateConfig(config);
  return config;
}

/** Splits "host:port" (or "[::1]:port"). */
export function parseListen(listen: string, setting = "listen"): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listen);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`${setting} must be host:port, got ${JSON.stringify(listen)}`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** Whether a listen host ("127.0.0.1", "[::1]", "localhost") is a loopback address. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}

function validateConfig(c: BatonConfig): void {
  parseListen(c.listen);
  if (c.adminListen) parseListen(c.adminListen, "adminListen");
  if (!["auto", "on", "off"].includes(c.dashboard.enabled)) throw new ConfigError(`dashboard.enabled must be "auto", "on" or "off", got ${JSON.stringify(c.dashboard.enabled)}`);
  if (c.dashboard.enabled === "on" && c.adminListen && !c.dashboard.mutualTls && !isLoopbackHost(parseListen(c.adminListen, "adminListen").host)) {
    throw new ConfigError(`dashboard.enabled is "on" but adminListen ${c.adminListen} is not a loopback address: off loopback the dashboard needs access control; set dashboard.mutualTls (BATON_DASHBOARD_MTLS) so operators present a certificate from tls.caFile, or listen on 127.0.0.1`);
  }
  if (c.dashboard.mutualTls && c.mesh.enabled) throw new ConfigError("dashboard.mutualTls cannot be used with mesh.enabled: behind a mesh the sidecar terminates TLS; keep the admin port on loopback");
  c.resources.forEach((r, i) => {
    if (typeof r !== "object" || !r || typeof r.agentId !== "string" || !r.agentId || typeof r.resourceId !== "string" || !r.resourceId || typeof r.kind !== "string" || typeof r.capacity !== "number" || r.capacity < 0) {
      throw new ConfigError(`resources[${i}] must be { agentId, resourceId, kind, capacity >= 0 }`);
    }
  });
  if (!["all", "coordinator", "resource-manager", "performance-monitor"].includes(c.services.only)) throw new ConfigError(`services.only must be all, coordinator, resource-manager or performance-monitor, got ${JSON.stringify(c.services.only)}`);
  if (c.services.resourceManager) parseListen(c.services.resourceManager);
  if (c.services.performanceMonitor) parseListen(c.services.performanceMonitor);
  if (c.services.only === "all" && (c.services.resourceManager || c.services.performanceMonitor)) throw new ConfigError(`services.only "all" runs the Resource Manager and Performance Monitor here; name their addresses only with --only coordinator`);
  const positive: Array<[string, number]> = [
    ["session.heartbeatIntervalMs", c.session.heartbeatIntervalMs],
    ["session.heartbeatMisses", c.session.heartbeatMisses],
    ["session.helloTimeoutMs", c.session.helloTimeoutMs],
    ["session.statusTimeoutMs", c.session.statusTimeoutMs],
    ["session.ackTimeoutMs", c.session.ackTimeoutMs],
    ["session.defaultMaxInFlight", c.session.defaultMaxInFlight],
    ["session.maxInFlightLimit", c.session.maxInFlightLimit],
    ["session.outboxCapacity", c.session.outboxCapacity],
    ["session.maxBatch", c.session.maxBatch],
    ["session.disconnectGraceMs", c.session.disconnectGraceMs],
    ["limits.maxTaskSpecBytes", c.limits.maxTaskSpecBytes],
    ["limits.maxHelloBytes", c.limits.maxHelloBytes],
    ["limits.maxHelloCapabilities", c.limits.maxHelloCapabilities],
    ["limits.maxHelloLabels", c.limits.maxHelloLabels],
    ["limits.maxHelloResources", c.limits.maxHelloResources],
    ["delivery.backoffInitialMs", c.delivery.backoffInitialMs],
    ["delivery.backoffMaxMs", c.delivery.backoffMaxMs],
    ["delivery.leaseMs", c.delivery.leaseMs],
    ["breaker.resetTimeoutMs", c.breaker.resetTimeoutMs],
    ["breaker.volumeThreshold", c.breaker.volumeThreshold],
    ["breaker.rollingCountTimeoutMs", c.breaker.rollingCountTimeoutMs],
    ["tasks.maxAttempts", c.tasks.maxAttempts],
    ["tasks.maxDeliveries", c.tasks.maxDeliveries],
    ["tasks.coalitionFormationMs", c.tasks.coalitionFormationMs],
    ["tasks.maxOpen", c.tasks.maxOpen],
    ["tasks.maxOpenBytes", c.tasks.maxOpenBytes],
    ["tasks.maxBulk", c.tasks.maxBulk],
    ["transport.maxReceiveMessageBytes", c.transport.maxReceiveMessageBytes],
    ["transport.maxSendMessageBytes", c.transport.maxSendMessageBytes],
    ["transport.maxConcurrentStreams", c.transport.maxConcurrentStreams],
    ["transport.maxConnections", c.transport.maxConnections],
    ["transport.maxConnectionsPerAddress", c.transport.maxConnectionsPerAddress],
    ["tls.reloadIntervalMs", c.tls.reloadIntervalMs],
    ["security.keyRotationMs", c.security.keyRotationMs],
    ["security.replayWindowMs", c.security.replayWindowMs],
    ["dashboard.pulseMs", c.dashboard.pulseMs],
  ];
  for (const [name, value] of positive) {
    if (!Number.isInteger(value) || value <= 0) throw new ConfigError(`${name} must be a positive whole number, got ${value}`);
  }
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
  const MAX_TIMER_MS = 2_147_483_647;
  // Node's timers overflow past 2^31 - 1 ms to 1 ms: a huge age would close every connection at once.
  for (const [name, v] of [
    ["transport.keepaliveTimeoutMs", c.transport.keepaliveTimeoutMs],
    ["transport.maxConnectionIdleMs", c.transport.maxConnectionIdleMs],
    ["transport.tlsHandshakeTimeoutMs", c.transport.tlsHandshakeTimeoutMs],
    ["transport.prefaceTimeoutMs", c.transport.prefaceTimeoutMs],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0 || v > MAX_TIMER_MS) throw new ConfigError(`${name} must be a whole number from 1 to ${MAX_TIMER_MS}, got ${v}`);
  }
  for (const [name, v] of [["transport.maxConnectionAgeMs", c.transport.maxConnectionAgeMs], ["transport.maxConnectionAgeGraceMs", c.transport.maxConnectionAgeGraceMs]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > MAX_TIMER_MS) throw new ConfigError(`${name} must be a whole number from 0 to ${MAX_TIMER_MS} (0 turns the age limit off), got ${v}`);
  }
  try {
    addressList(c.transport.maxConnectionsPerAddressExempt);
  } catch (err) {
    throw new ConfigError(`transport.maxConnectionsPerAddressExempt: ${(err as Error).message}`);
  }
  if (c.transport.keepaliveTimeMs < 10_000) {
    // grpc-js servers refuse clients that ping more often than min_ping_interval (10 s here).
    throw new ConfigError(`transport.keepaliveTimeMs must be at least 10000, got ${c.transport.keepaliveTimeMs}`);
  }
  if (!Number.isInteger(c.delivery.retryCount) || c.delivery.retryCount < 0) throw new ConfigError(`delivery.retryCount must be 0 or more, got ${c.delivery.retryCount}`);
  if (c.delivery.backoffInitialMs > c.delivery.backoffMaxMs) throw new ConfigError(`delivery.backoffInitialMs (${c.delivery.backoffInitialMs}) exceeds delivery.backoffMaxMs (${c.delivery.backoffMaxMs})`);
  if (c.tasks.maxAttempts > c.tasks.maxDeliveries) throw new ConfigError(`tasks.maxAttempts (${c.tasks.maxAttempts}) exceeds tasks.maxDeliveries (${c.tasks.maxDeliveries})`);
  if (c.delivery.leaseMs <= c.session.heartbeatIntervalMs) throw new ConfigError(`delivery.leaseMs (${c.delivery.leaseMs}) must exceed session.heartbeatIntervalMs (${c.session.heartbeatIntervalMs})`);
  if (!["sqlite", "memory"].includes(c.store.kind)) throw new ConfigError(`store.kind must be "sqlite" or "memory", got ${JSON.stringify(c.store.kind)}`);
  if (!["FULL", "NORMAL"].includes(c.store.synchronous)) throw new ConfigError(`store.synchronous must be "FULL" or "NORMAL"`);
  // The same shape as a key file's lines (store/secret-box.ts); the value is never echoed.
  c.store.key.split(",").forEach((k, i) => {
    if (c.store.key && !/^[A-Za-z0-9+/]{43}=$/.test(k.trim())) throw new ConfigError(`store.key (BATON_JOURNAL_KEY): entry ${i + 1} is not a journal key (base64 of 32 bytes: 44 characters)`);
  });
  if (!["info", "debug"].includes(c.log.protocolLevel)) throw new ConfigError(`log.protocolLevel must be "info" or "debug"`);
  if (!["required", "off"].includes(c.security.messageSecurity)) throw new ConfigError(`security.messageSecurity must be "required" or "off", got ${JSON.stringify(c.security.messageSecurity)}`);
  if (!Number.isInteger(c.session.syncIntervalMs) || c.session.syncIntervalMs < 0 || c.session.syncIntervalMs > MAX_TIMER_MS) {
    throw new ConfigError(`session.syncIntervalMs must be a whole number from 0 to ${MAX_TIMER_MS} (0: every round asks every agent), got ${c.session.syncIntervalMs}`);
  }
  for (const [name, v] of [["drainGraceMs", c.drainGraceMs], ["tasks.progressEventIntervalMs", c.tasks.progressEventIntervalMs]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > MAX_TIMER_MS) throw new ConfigError(`${name} must be a whole number from 0 to ${MAX_TIMER_MS}, got ${v}`);
  }
  if (!Number.isInteger(c.security.keyGraceMs) || c.security.keyGraceMs < 0) throw new ConfigError(`security.keyGraceMs must be 0 or more, got ${c.security.keyGraceMs}`);
  if (c.mesh.enabled && c.mesh.trustedPeers.length === 0) throw new ConfigError("mesh.enabled needs mesh.trustedPeers: the sidecar addresses whose x-forwarded-client-cert header is believed");
  try {
    addressList(c.mesh.trustedPeers);
  } catch (err) {
    throw new ConfigError(`mesh.trustedPeers: ${(err as Error).message}`);
  }
  if (!/^[A-Za-z0-9._-]+$/.test(c.tls.trustDomain)) throw new ConfigError(`tls.trustDomain ${JSON.stringify(c.tls.trustDomain)} is not a valid SPIFFE trust domain`);
}
