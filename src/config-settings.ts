import { DEFAULT_CONNECTION_LIMITS, DEFAULT_TRANSPORT_LIMITS } from "./rpc/index.js";
import { DEFAULT_PAYLOAD_LIMITS } from "./protocol/index.js";

// The one definition of baton's configuration: every setting once, with its type, default,
// unit, documentation, environment variable and flag. The BatonConfig type, the defaults,
// the environment and file readers, per-setting checks, `baton config print` and the JSON
// Schema are all derived from this table.

/** What kind of value a setting holds. */
export type SettingKind = "string" | "int" | "number" | "bool" | "enum" | "list" | "records";

/** One setting (a leaf of the table). */
export interface Leaf<T> {
  readonly leaf: true;
  readonly kind: SettingKind;
  readonly default: T;
  /** What it does, one sentence or two; the schema's description. */
  readonly doc: string;
  /** "ms", "bytes", "%"... */
  readonly unit?: string;
  /** Its BATON_* environment variable. */
  readonly env?: string;
  /** Its `baton serve` flag. */
  readonly flag?: string;
  /** enum: the values allowed. */
  readonly values?: readonly string[];
  /** int, number: the smallest and largest allowed. */
  readonly min?: number;
  readonly max?: number;
  /** Why the bound is there, appended to the error. */
  readonly boundNote?: string;
  /** When the default "" means "derived from another setting", in words ("<certsDir>/ca.pem"). */
  readonly derived?: string;
  /** For an environment variable, "" is a value rather than "unset". */
  readonly emptyIsValue?: boolean;
  /** Never printed (`baton config print` shows whether it is set). */
  readonly secret?: boolean;
  /** records: the JSON Schema of one item. */
  readonly item?: Record<string, unknown>;
}

/** A group of settings (an object in the file). */
export interface Group<C extends Record<string, Node>> {
  readonly leaf: false;
  readonly doc: string;
  readonly children: C;
}

/** A node of the table. */
export type Node = Leaf<unknown> | Group<Record<string, Node>>;

/** The configuration type a node describes. */
export type ConfigOf<N> = N extends Group<infer C> ? { -readonly [K in keyof C]: ConfigOf<C[K]> } : N extends Leaf<infer T> ? T : never;

type Extra = Omit<Partial<Leaf<unknown>>, "leaf" | "kind" | "default" | "doc" | "values">;

const MAX_TIMER_MS = 2_147_483_647;
// Node's timers overflow past 2^31 - 1 ms to 1 ms: a huge timeout would fire at once.
const TIMER = { max: MAX_TIMER_MS, boundNote: "Node's timers overflow past it" } as const;

const text = (value: string, doc: string, extra: Extra = {}): Leaf<string> => ({ leaf: true, kind: "string", default: value, doc, ...extra });
const int = (value: number, doc: string, extra: Extra = {}): Leaf<number> => ({ leaf: true, kind: "int", default: value, doc, min: 1, ...extra });
const num = (value: number, doc: string, extra: Extra = {}): Leaf<number> => ({ leaf: true, kind: "number", default: value, doc, ...extra });
const bool = (value: boolean, doc: string, extra: Extra = {}): Leaf<boolean> => ({ leaf: true, kind: "bool", default: value, doc, ...extra });
const list = (value: string[], doc: string, extra: Extra = {}): Leaf<string[]> => ({ leaf: true, kind: "list", default: value, doc, ...extra });
const oneOf = <const V extends readonly string[]>(values: V, value: V[number], doc: string, extra: Extra = {}): Leaf<V[number]> => ({ leaf: true, kind: "enum", values, default: value, doc, ...extra });
const records = <T>(doc: string, item: Record<string, unknown>): Leaf<T[]> => ({ leaf: true, kind: "records", default: [], doc, item });
const group = <C extends Record<string, Node>>(doc: string, children: C): Group<C> => ({ leaf: false, doc, children });

/** pino's levels, and "silent". */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const T = DEFAULT_TRANSPORT_LIMITS;
const C = DEFAULT_CONNECTION_LIMITS;
const P = DEFAULT_PAYLOAD_LIMITS;

/** Every setting of a baton process. */
export const SETTINGS = group("The configuration of a baton process.", {
  coordinatorId: text("baton-coordinator", "This coordinator's id, in logs, Welcome and reports.", { env: "BATON_COORDINATOR_ID", flag: "--coordinator-id" }),
  listen: text("127.0.0.1:50051", 'Where the gRPC server listens, "host:port"; port 0 picks a free one.', { env: "BATON_LISTEN", flag: "--listen" }),
  tls: group("Mutual TLS.", {
    trustDomain: text("baton.local", "SPIFFE trust domain of every identity.", { env: "BATON_TRUST_DOMAIN", flag: "--trust-domain" }),
    certsDir: text("certs", "Folder of the development certificates; the default place of every file below.", { env: "BATON_CERTS_DIR", flag: "--certs-dir" }),
    caFile: text("", "CA bundle that client certificates must chain to.", { env: "BATON_TLS_CA", derived: "<certsDir>/ca.pem" }),
    certFile: text("", "The server's certificate.", { env: "BATON_TLS_CERT", derived: "<certsDir>/coordinator.pem" }),
    keyFile: text("", "The server's private key.", { env: "BATON_TLS_KEY", derived: "<certsDir>/coordinator.key" }),
    devCerts: bool(false, "Make the CA, server and operator certificates when missing (development).", { env: "BATON_DEV_CERTS", flag: "--dev-certs" }),
    revokedFile: text("", "Deny list of revoked certificate serials (`baton certs revoke`).", { env: "BATON_REVOKED_FILE", derived: "<certsDir>/revoked.json" }),
    reloadIntervalMs: int(5000, "How often the certificate files and the deny list are checked for changes.", { unit: "ms", env: "BATON_TLS_RELOAD_MS" }),
  }),
  security: group("Authorization and message security.", {
    policyFile: text("", 'JSON policy overriding the default roles -> capabilities, role by role; "" keeps the default.', { env: "BATON_POLICY_FILE" }),
    messageSecurity: oneOf(["required", "off"], "required", '"required" (the spec: batches signed with HMAC-SHA256 both ways, sensitive input sealed) or "off".', { env: "BATON_MESSAGE_SECURITY" }),
    keyRotationMs: int(24 * 60 * 60 * 1000, "How long a session's message key signs new messages before it is rotated (24 h).", { unit: "ms", env: "BATON_KEY_ROTATION_MS" }),
    keyGraceMs: int(60 * 60 * 1000, "How long the previous key is still accepted after a rotation (1 h).", { unit: "ms", min: 0 }),
    replayWindowMs: int(5 * 60 * 1000, "How far a signed batch's timestamp may be from now, either way (5 min).", { unit: "ms", env: "BATON_REPLAY_WINDOW_MS" }),
  }),
  mesh: group("Behind a service mesh: the sidecar terminates mTLS and names the caller in x-forwarded-client-cert.", {
    enabled: bool(false, "Listen in plaintext and take identities from trusted sidecars.", { env: "BATON_MESH" }),
    trustedPeers: list([], 'Addresses or CIDR ranges of the sidecars whose header is believed ("127.0.0.1", "10.0.0.0/8").', { env: "BATON_MESH_TRUSTED_PEERS" }),
  }),
  session: group("The agent session.", {
    heartbeatIntervalMs: int(5000, "How often each side sends a heartbeat.", { unit: "ms", env: "BATON_HEARTBEAT_INTERVAL_MS" }),
    heartbeatMisses: int(3, "Heartbeats an agent may miss before its session is closed.", { env: "BATON_HEARTBEAT_MISSES" }),
    helloTimeoutMs: int(10_000, "How long an agent has to send Hello after opening Connect.", { unit: "ms" }),
    statusTimeoutMs: int(5000, "How long a status request waits for the agent's answer.", { unit: "ms", env: "BATON_STATUS_TIMEOUT_MS" }),
    syncIntervalMs: int(100, "The spec's state_consistency sync_interval: agents push their status at most this often, and a round asks only agents whose status is older.", { unit: "ms", env: "BATON_SYNC_INTERVAL_MS", min: 0, max: MAX_TIMER_MS, boundNote: "0: every round asks every agent" }),
    ackTimeoutMs: int(10_000, "How long the coordinator waits for a DirectiveAck.", { unit: "ms", env: "BATON_ACK_TIMEOUT_MS" }),
    defaultMaxInFlight: int(16, "In-flight cap for an agent whose Hello asks for 0."),
    maxInFlightLimit: int(1000, "Largest in-flight cap granted."),
    outboxCapacity: int(10_000, "Messages queued for one agent before it is cut off as too slow."),
    maxBatch: int(256, "Most coordinator messages batched into one stream message."),
    disconnectGraceMs: int(15_000, "How long a disconnected agent may resume before it is lost (offline, work replanned).", { unit: "ms", env: "BATON_DISCONNECT_GRACE_MS" }),
  }),
  delivery: group("Delivery of directives (the spec: ack_required, retry_count 3, retry_delay exponential).", {
    retryCount: int(3, "Resends of an unacked directive before the agent is given up on.", { env: "BATON_RETRY_COUNT", min: 0 }),
    backoffInitialMs: int(500, "First resend delay, doubled each time with jitter.", { unit: "ms" }),
    backoffMaxMs: int(10_000, "Longest resend delay.", { unit: "ms" }),
    leaseMs: int(60_000, "How long an accepted directive runs without progress before it is given up.", { unit: "ms", env: "BATON_LEASE_MS" }),
  }),
  breaker: group("Agent circuit breakers (opossum).", {
    resetTimeoutMs: int(30_000, "How long an open breaker waits before one probe.", { unit: "ms", env: "BATON_BREAKER_RESET_MS" }),
    errorThresholdPercentage: num(50, "Failure percentage that opens it.", { unit: "%", min: 0, max: 100 }),
    volumeThreshold: int(10, "Deliveries in the window before the percentage counts."),
    rollingCountTimeoutMs: int(60_000, "The rolling window.", { unit: "ms" }),
  }),
  tasks: group("Tasks.", {
    maxAttempts: int(3, "Attempts per task (directive_failed, lease expiry, rejection) before it is dead-lettered.", { env: "BATON_MAX_ATTEMPTS" }),
    maxDeliveries: int(20, "Deliveries per task whatever the cause (agents lost, deferrals) before it is dead-lettered."),
    retryDelayMs: int(200, "Delay before a failed task is retried, doubled per failure.", { unit: "ms", min: 0 }),
    coalitionFormationMs: int(5000, "How long every member of a coalition has to accept, unless the task says.", { unit: "ms" }),
    maxOpen: int(100_000, "Tasks not yet ended (pending, assigned or running) the coordinator holds; a submit or resubmit beyond is RESOURCE_EXHAUSTED.", { env: "BATON_MAX_OPEN_TASKS" }),
    maxOpenBytes: int(256 * 1024 * 1024, "Bytes of those tasks' specs (input included, as encoded), at most (256 MiB); a submit beyond is RESOURCE_EXHAUSTED.", { unit: "bytes", env: "BATON_MAX_OPEN_TASK_BYTES" }),
    keepEnded: int(10_000, "Ended tasks (succeeded, dead-lettered, cancelled) kept for GetTask, ListTasks and idempotent resubmits; beyond, the longest ended is forgotten, in memory and in the journal. A submit of a forgotten task's id is a new task.", { env: "BATON_KEEP_ENDED_TASKS", min: 0 }),
    keepEndedMs: int(86_400_000, "How long an ended task is kept at most (24 h), whatever keepEnded allows; 0: no age bound.", { unit: "ms", env: "BATON_KEEP_ENDED_TASKS_MS", min: 0, ...TIMER }),
    maxBulk: int(1000, "Tasks one Control.SubmitTasks call may carry (the call is also bounded by transport.maxReceiveMessageBytes)."),
    progressEventIntervalMs: int(250, "Least time between two task.<id>.progress events of one task: a chatty agent cannot flood watchers, and the latest progress is always delivered. 0 publishes every report.", { unit: "ms", env: "BATON_PROGRESS_EVENT_INTERVAL_MS", min: 0, max: MAX_TIMER_MS }),
  }),
  store: group("The journal.", {
    kind: oneOf(["sqlite", "memory", "etcd"], "sqlite", '"sqlite" (durable), "memory" (nothing survives a restart) or "etcd" (the journal in etcd, shared by replicas with leader election: see store.etcd and cluster).', { env: "BATON_STORE" }),
    dataDir: text("data", "Folder of the SQLite journal, its state file and the lock that keeps a second server out.", { env: "BATON_DATA_DIR" }),
    synchronous: oneOf(["FULL", "NORMAL"], "FULL", "SQLite synchronous mode: FULL survives power loss, NORMAL a process crash."),
    keyFile: text("", "The key file that seals tasks' sensitive_input at rest (AES-256-GCM): base64 of 32 bytes a line, the first sealing, any others older keys still read.", { env: "BATON_JOURNAL_KEY_FILE", derived: "<certsDir>/journal.key" }),
    key: text("", "The same keys given directly, base64, comma-separated; when set, keyFile is not read.", { env: "BATON_JOURNAL_KEY", secret: true }),
    etcd: group("The journal in etcd (store.kind \"etcd\").", {
      endpoints: list(["127.0.0.1:2379"], 'etcd client endpoints, "host:port" (http, or https when caFile is set) or full URLs.', { env: "BATON_ETCD_ENDPOINTS" }),
      prefix: text("baton/", "Every key baton keeps in etcd starts with it: the journal, the election and the service registry; replica sets that share an etcd use different prefixes.", { env: "BATON_ETCD_PREFIX" }),
      caFile: text("", 'CA bundle of etcd\'s server certificate; "" for plaintext etcd.', { env: "BATON_ETCD_CA" }),
      certFile: text("", 'Client certificate for etcd\'s mutual TLS; "" for none.', { env: "BATON_ETCD_CERT" }),
      keyFile: text("", 'Its private key; "" for none.', { env: "BATON_ETCD_KEY" }),
      maxTxnOps: int(10_000, "Most ops one journal batch may carry: one batch is one etcd transaction, never split. Start etcd with --max-txn-ops at least this (etcd's default 128 is too small for group commits under load) and --max-request-bytes=33554432.", { env: "BATON_ETCD_MAX_TXN_OPS" }),
      dialTimeoutMs: int(5000, "How long to wait for a connection to etcd.", { unit: "ms", ...TIMER }),
    }),
  }),
  cluster: group("Replicas on etcd (store.kind \"etcd\"): one leader serves, the others wait and take over.", {
    advertise: text("", 'The address agents and clients reach this coordinator at, as the leader\'s address in the baton-leader trailer and the registry ("host:port"); "" is localhost and the bound port.', { env: "BATON_ADVERTISE" }),
    leaseTtlSeconds: int(5, "The leader's etcd lease: a leader that dies or stalls loses leadership this long after its last keep-alive.", { unit: "s", env: "BATON_LEASE_TTL_S", max: 3600 }),
    recheckMs: int(1000, "How often a follower re-reads the election key whatever its watch says (etcd watches can miss events across a reconnect); the margin a takeover may take beyond the lease TTL.", { unit: "ms", env: "BATON_CLUSTER_RECHECK_MS", ...TIMER }),
  }),
  transport: group("grpc-js transport limits, and the listener's limits on connections before grpc-js sees them.", {
    maxReceiveMessageBytes: int(T.maxReceiveMessageBytes, "Largest message accepted (4 MiB).", { unit: "bytes" }),
    maxSendMessageBytes: int(T.maxSendMessageBytes, "Largest message sent (4 MiB).", { unit: "bytes" }),
    maxConcurrentStreams: int(T.maxConcurrentStreams, "Concurrent streams per HTTP/2 connection."),
    keepaliveTimeMs: int(T.keepaliveTimeMs, "Ping the peer after this long without activity.", { unit: "ms", min: 10_000, boundNote: "grpc-js servers refuse clients that ping more often than every 10 s" }),
    keepaliveTimeoutMs: int(T.keepaliveTimeoutMs, "Drop the connection when a ping is unanswered this long.", { unit: "ms", ...TIMER }),
    maxConnectionIdleMs: int(T.maxConnectionIdleMs, "Close connections idle this long (30 min).", { unit: "ms", ...TIMER }),
    maxConnectionAgeMs: int(T.maxConnectionAgeMs, "Close connections older than this; agents resume elsewhere.", { unit: "ms", min: 0, max: MAX_TIMER_MS, boundNote: "0 turns the age limit off" }),
    maxConnectionAgeGraceMs: int(T.maxConnectionAgeGraceMs, "Grace after max age for calls to finish.", { unit: "ms", min: 0, max: MAX_TIMER_MS, boundNote: "0 turns the age limit off" }),
    tlsHandshakeTimeoutMs: int(C.tlsHandshakeTimeoutMs, "How long a new connection has to complete the TLS handshake before it is destroyed.", { unit: "ms", env: "BATON_TLS_HANDSHAKE_TIMEOUT_MS", ...TIMER }),
    prefaceTimeoutMs: int(C.prefaceTimeoutMs, "How long a connection has, once TLS is done, to send the HTTP/2 preface and its first SETTINGS.", { unit: "ms", env: "BATON_PREFACE_TIMEOUT_MS", ...TIMER }),
    maxConnections: int(C.maxConnections, "Connections open at once, every peer together; past it new ones are closed at once.", { env: "BATON_MAX_CONNECTIONS" }),
    maxConnectionsPerAddress: int(C.maxConnectionsPerAddress, "Connections open at once from one IP address; past it new ones from that address are closed at once.", { env: "BATON_MAX_CONNECTIONS_PER_ADDRESS" }),
    maxConnectionsPerAddressExempt: list([...C.maxConnectionsPerAddressExempt], "Addresses or CIDR ranges the per-address cap does not apply to (the total cap still does)."),
  }),
  limits: group("What the server accepts, sized so that every answer, event and directive built from it fits a transport message. Ids and names are at most 256 characters and reasons 16384, whatever these say.", {
    maxTaskSpecBytes: int(P.maxTaskSpecBytes, "Largest task spec accepted, serialized (input, sensitive_input and every other field) (1 MiB).", { unit: "bytes", env: "BATON_MAX_TASK_SPEC_BYTES" }),
    maxHelloBytes: int(P.maxHelloBytes, "Largest Hello accepted, serialized (16 KiB).", { unit: "bytes" }),
    maxHelloCapabilities: int(P.maxHelloCapabilities, "Most capabilities in a Hello."),
    maxHelloLabels: int(P.maxHelloLabels, "Most labels in a Hello."),
    maxHelloResources: int(P.maxHelloResources, "Most resources in a Hello."),
  }),
  log: group("Logging.", {
    level: oneOf(LOG_LEVELS, "info", "pino level.", { env: "BATON_LOG_LEVEL", flag: "--log-level" }),
    protocolLevel: oneOf(["info", "debug"], "debug", 'Level of the per-message protocol log lines: "debug" keeps about ten lines a task off the hot path; state changes stay at info.'),
  }),
  shutdownGraceMs: int(5000, "How long shutdown waits for calls to finish before forcing.", { unit: "ms", env: "BATON_SHUTDOWN_GRACE_MS", min: 0 }),
  drainGraceMs: int(30_000, "On SIGTERM, how long in-flight directives may run to their completion before the server stops anyway (forcing); no new work is placed meanwhile.", { unit: "ms", env: "BATON_DRAIN_GRACE_MS", min: 0, max: MAX_TIMER_MS }),
  adminListen: text("127.0.0.1:9464", 'The admin HTTP endpoint (Prometheus /metrics, /healthz), "host:port"; "" turns it off.', { env: "BATON_ADMIN_LISTEN", flag: "--admin-listen", emptyIsValue: true }),
  dashboard: group("The operators' web dashboard, served on the admin port (adminListen) at /dashboard/.", {
    enabled: oneOf(["auto", "on", "off"], "auto", '"auto": on when adminListen is a loopback address or dashboard.mutualTls is set, off otherwise; "on" (refused at start off loopback without mutualTls); "off".', { env: "BATON_DASHBOARD" }),
    mutualTls: bool(false, "Serve the admin port over HTTPS (tls.certFile, tls.keyFile) and require, for the dashboard, a client certificate from tls.caFile whose role the policy lets read and act (operators).", { env: "BATON_DASHBOARD_MTLS" }),
    pulseMs: int(2000, "How often an open dashboard is sent the agents' figures, rounds and metrics.", { unit: "ms" }),
  }),
  resources: records<{ agentId: string; resourceId: string; kind: string; capacity: number }>("Resources offered from configuration rather than an agent's Hello (a shared GPU, a license pool).", {
    type: "object",
    additionalProperties: false,
    required: ["agentId", "resourceId", "kind", "capacity"],
    properties: {
      agentId: { type: "string", minLength: 1, description: "The agent (or pool) that offers it." },
      resourceId: { type: "string", minLength: 1, description: 'The resource ("gpu_0", "license-1").' },
      kind: { type: "string", description: 'Its kind ("gpu").' },
      capacity: { type: "number", minimum: 0, description: "How much of it there is." },
    },
  }),
  services: group("Which participants this process runs, and where the others are.", {
    only: oneOf(["all", "coordinator", "resource-manager", "performance-monitor"], "all", '"all": coordinator, Resource Manager and Performance Monitor in one process; or just one of them.', { env: "BATON_ONLY", flag: "--only" }),
    resourceManager: text("", 'A Resource Manager in another process ("localhost:50052"), reached over mTLS through a breaker; "registry" finds one in the service registry in etcd (store.kind "etcd"), switching to another when it goes; "" embeds it.', { env: "BATON_RESOURCE_MANAGER", flag: "--resource-manager" }),
    performanceMonitor: text("", 'A Performance Monitor in another process ("localhost:50053"); "registry" finds one in the service registry in etcd (store.kind "etcd"); "" embeds it.', { env: "BATON_PERFORMANCE_MONITOR", flag: "--performance-monitor" }),
  }),
});

/** Every setting with its dotted path ("session.heartbeatIntervalMs"), in the table's order. */
export function settingsList(node: Node = SETTINGS, prefix = ""): Array<[path: string, leaf: Leaf<unknown>]> {
  if (node.leaf) return [[prefix, node]];
  return Object.entries(node.children).flatMap(([key, child]) => settingsList(child, prefix ? `${prefix}.${key}` : key));
}

/** The setting at a dotted path, if there is one. */
export function settingAt(path: string): Leaf<unknown> | undefined {
  let node: Node | undefined = SETTINGS;
  for (const part of path.split(".")) node = node && !node.leaf ? node.children[part] : undefined;
  return node?.leaf ? node : undefined;
}
