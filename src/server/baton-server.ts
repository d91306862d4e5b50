import { Server, ServerCredentials } from "@grpc/grpc-js";
import { setMaxListeners } from "node:events";
import { Registry } from "prom-client";
import { file_baton_v1_control, Control } from "../../gen/baton/v1/control_pb.js";
import { file_baton_v1_session, Coordinator as CoordinatorService } from "../../gen/baton/v1/session_pb.js";
import { file_grpc_health_v1_health, Health } from "../../gen/grpc/health/v1/health_pb.js";
import { file_baton_v1_resource_manager, ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { createResourceManagerService, embeddedResourceManager, remoteResourceManager, ResourceInventory } from "../resources/index.js";
import { isLoopbackHost, parseListen, type BatonConfig } from "../config.js";
import { createControlService } from "../control/index.js";
import { createAdminDashboard, type AdminDashboard } from "../dashboard/index.js";
import { EventLog, publishCoordinatorEvents, publishTaskProgress, type TaskProgressView } from "../events/index.js";
import { Coordinator } from "../coordinator/index.js";
import { unavailable } from "../errors.js";
import { messageBudget } from "../protocol/index.js";
import { openConfiguredStore, type Store } from "../store/index.js";
import type { Logger } from "../logging.js";
import { createConnectionMetrics, createCoordinatorMetrics, createGrpcServerMetrics, createOperationsMetrics, createPerformanceMonitorService, PerformanceStore, remotePerformanceMonitor, startAdminServer, type AdminServer, type CoordinatorMetrics } from "../monitor/index.js";
import { file_baton_v1_performance_monitor, PerformanceMonitor } from "../../gen/baton/v1/performance_monitor_pb.js";
import { adaptService, addReflection, callMetricsInterceptor, clientChannelOptions, clientCredentials, ConnectionGuard, createChannel, createHealth, guardInterceptor, reloadingServerCredentials, serverChannelOptions, readTlsFiles, ServingStatus, type AdaptedService, type AdapterOptions, type Channel, type HealthState, type ReloadingCredentials, type ServiceImpl, type TlsMaterial } from "../rpc/index.js";
import type { DescFile } from "@bufbuild/protobuf";
import { createCallBreaker, type CallBreaker } from "../breakers/index.js";
import { joinCluster, joinRegistry, type ClusterMember, type ServiceKind, type ServiceMember } from "../cluster/index.js";
import { AccessControl } from "./access-control.js";
import { forwardControlReads, type ControlForwarder } from "./control-forwarder.js";
import { checkOwnRole, checkOwnTrustDomain, listenFailure } from "./startup-checks.js";

/** Where a server is in its life. */
export type ServerState = "new" | "starting" | "serving" | "draining" | "stopping" | "stopped";

/** What a BatonServer is made from. */
export interface BatonServerOptions {
  config: BatonConfig;
  logger: Logger;
  /** The journal's store; by default the one the configuration names (SQLite in dataDir). */
  store?: Store;
  /** This server's certificate and key for calling other participants; by default the configured files. */
  clientTls?: TlsMaterial;
}


/** The `baton serve` process: coordinator, Control, Resource Manager, Performance Monitor (or some of them), health and reflection on one mTLS port. */
export class BatonServer {
  private coordinatorInstance: Coordinator | undefined;
  /** The Resource Manager's inventory, shared by the coordinator and the ResourceManager service. */
  readonly inventory = new ResourceInventory();
  /** The Performance Monitor's figures, fed by the coordinator, served by PerformanceMonitor. */
  readonly performance = new PerformanceStore();
  /** Every state change, for Control.WatchEvents. */
  readonly events = new EventLog();
  private unpublish: (() => void) | undefined;
  /** The latest progress of each running task, and its task.<id>.progress events; there once start() has made the coordinator. */
  private progress: (TaskProgressView & { stop(): void }) | undefined;
  private metricsInstance: CoordinatorMetrics | undefined;
  private operationsMetrics: { detach(): void } | undefined;
  private admin: AdminServer | undefined;
  /** The Control operations, served on the gRPC port and used by the dashboard. */
  private control: ServiceImpl<typeof Control> | undefined;
  private dashboard: AdminDashboard | undefined;
  readonly health: HealthState;
  private readonly server: Server;
  private readonly shutdownController = new AbortController();
  private readonly logger: Logger;
  private currentState: ServerState = "new";
  private boundPort = 0;
  /** Prometheus metrics of this process, served on the admin port. */
  readonly registry = new Registry();
  /** Authentication, the capability policy and revocation, applied to every call. */
  readonly access: AccessControl;
  private reloading: ReloadingCredentials | undefined;
  /** The listener in front of grpc-js (connection caps, TLS and preface deadlines); there once start() binds. */
  private listener: ConnectionGuard | undefined;
  private readonly connectionMetrics = createConnectionMetrics(this.registry, () => this.listener?.open ?? 0);

  constructor(private readonly options: BatonServerOptions) {
    const { config } = options;
    this.logger = options.logger.child({ component: "server" });
    // Every live call listens for shutdown (and removes its listener when it ends).
    setMaxListeners(0, this.shutdownController.signal);
    this.access = new AccessControl(config, options.logger, this.registry);
    // One interceptor guards every service, health and reflection included: no handler can forget.
    // Metrics first: calls the guard refuses are counted too, as go-grpc-prometheus counts them.
    this.server = new Server({ ...serverChannelOptions(config.transport), interceptors: [callMetricsInterceptor(createGrpcServerMetrics(this.registry)), guardInterceptor(this.access.guard)] });
    const adapter: AdapterOptions = {
      logger: options.logger,
      shutdownSignal: this.shutdownController.signal,
      authenticate: (peer, headers) => this.access.authenticate(peer, headers),
      onCall: this.access.onCall,
    };
    // Each participant runs here unless the configuration puts it in another process.
    const { only, resourceManager, performanceMonitor } = config.services;
    this.runsCoordinator = only === "all" || only === "coordinator";
    this.runsResourceManager = only === "resource-manager" || (this.runsCoordinator && !resourceManager);
    this.runsPerformanceMonitor = only === "performance-monitor" || (this.runsCoordinator && !performanceMonitor);
    const served: Array<[string, DescFile, AdaptedService]> = [];
    if (this.runsCoordinator) {
      served.push([CoordinatorService.typeName, file_baton_v1_session, adaptService(CoordinatorService, { connect: (requests, ctx) => this.coordinator.connect(requests, ctx) }, adapter)]);
      this.control = createControlService(() => this.coordinator, this.events, { answerBudgetBytes: messageBudget(config.transport), progress: { latest: (taskId) => this.progress?.latest(taskId) } });
      // A follower forwards Control reads to the leader for its caller; writes it refuses, naming the leader.
      this.forwarder = forwardControlReads(this.control, { leader: () => this.forwardReadsTo(), notLeader: () => this.cluster!.notLeader(), connect: (address) => this.dial(address, `leader ${address}`), logger: this.logger });
      const forwarder = this.forwarder;
      this.peers.push({ close: () => forwarder.close() });
      served.push([Control.typeName, file_baton_v1_control, adaptService(Control, forwarder.service, adapter)]);
    }
    if (this.runsResourceManager) served.push([ResourceManager.typeName, file_baton_v1_resource_manager, adaptService(ResourceManager, createResourceManagerService(this.inventory), adapter)]);
    if (this.runsPerformanceMonitor) served.push([PerformanceMonitor.typeName, file_baton_v1_performance_monitor, adaptService(PerformanceMonitor, createPerformanceMonitorService(this.performance), adapter)]);
    const names = [...served.map(([name]) => name), Health.typeName];
    this.health = createHealth(names);
    for (const [, , adapted] of served) this.server.addService(adapted.definition, adapted.implementation);
    const health = adaptService(Health, this.health.impl, adapter);
    this.server.addService(health.definition, health.implementation);
    addReflection(this.server, [...served.map(([, file]) => file), file_grpc_health_v1_health], names);
  }

  private readonly runsCoordinator: boolean;
  private readonly runsResourceManager: boolean;
  private readonly runsPerformanceMonitor: boolean;
  private readonly peers: Array<{ close(): void }> = [];
  /** With store.kind "etcd": this process's place in the replica set; it serves agents and Control only while it leads. */
  private cluster: ClusterMember | undefined;
  /** A Resource Manager or Performance Monitor on its own with store.kind "etcd": its entry in the service registry. */
  private registration: ServiceMember | undefined;
  private leading = false;
  /** A follower's channels to the leader for Control reads; it closes those to former leaders. */
  private forwarder: ControlForwarder | undefined;

  /** A channel to another participant over mTLS, as this server's identity, through a named breaker; closed at shutdown. */
  private peer(address: string, name: string): { channel: Channel; breaker: CallBreaker } {
    const { channel, breaker } = this.dial(address, name);
    this.peers.push({ close: () => channel.close() }, { close: () => breaker.shutdown() });
    return { channel, breaker };
  }

  /** The same, closed by whoever asked for it. */
  private dial(address: string, name: string): { channel: Channel; breaker: CallBreaker } {
    return { channel: this.channelTo(address), breaker: createCallBreaker(name, this.logger) };
  }

  /** A channel to another participant over mTLS, as this server's identity. */
  private channelTo(address: string): Channel {
    const tls = this.options.clientTls ?? readTlsFiles(this.options.config.tls);
    return createChannel(address, clientCredentials(tls), clientChannelOptions(this.options.config.transport));
  }

  /** A participant found in the service registry (services.* "registry"): resolved on each call, through one named breaker. */
  private async registryPeer(kind: ServiceKind, name: string): Promise<{ resolve: () => { channel: Channel; instance: string }; breaker: CallBreaker }> {
    if (!this.cluster) throw unavailable(`services: "registry" finds the ${name} in etcd, and this server has no replica set (a store was given to it)`);
    const breaker = createCallBreaker(name, this.logger);
    // One breaker per participant: failures of an instance that is gone must not keep its successor waiting out the reset timeout.
    const found = await this.cluster.follow(kind, (address) => this.channelTo(address), () => breaker.reset());
    this.peers.push({ close: () => breaker.shutdown() });
    return { resolve: () => found.resolve(), breaker };
  }

  /** Where Control reads go: undefined to serve them here; on a follower, the leader's address ("" when none is elected). */
  private forwardReadsTo(): string | undefined {
    if (!this.cluster || this.leading) return undefined;
    const leader = this.cluster.election.leaderAddress;
    // Elected, the journal still loading: answered here (the coordinator getter says it is not ready).
    return leader === this.cluster.address ? undefined : leader;
  }

  /** The coordinator; there once start() has loaded the journal. */
  get coordinator(): Coordinator {
    if (this.cluster && !this.leading) {
      // Elected, the journal still loading (forwardReadsTo sends reads here): not ready, and no follower naming itself as the leader.
      if (this.cluster.election.current) throw unavailable("this coordinator was elected and is loading its journal; retry shortly");
      throw this.cluster.notLeader();
    }
    if (!this.coordinatorInstance) throw unavailable("the coordinator is starting");
    return this.coordinatorInstance;
  }

  /** The admin endpoint's port (0 when it is off). */
  get adminPort(): number {
    return this.admin?.port ?? 0;
  }

  /** The dashboard's address ("http://localhost:9464/dashboard/"), or "" when it is off. */
  get dashboardUrl(): string {
    if (!this.dashboard || !this.admin) return "";
    const { host } = parseListen(this.options.config.adminListen, "adminListen");
    return `${this.dashboard.scheme}://${isLoopbackHost(host) ? "localhost" : host}:${this.admin.port}/dashboard/`;
  }

  /** Where the server is in its life. */
  get state(): ServerState {
    return this.currentState;
  }

  /** The port bound by start(). */
  get port(): number {
    return this.boundPort;
  }

  /** The credentials `start` uses by default: plaintext in mesh mode, else mTLS that follows renewed files. */
  private defaultCredentials(): ServerCredentials {
    const { config } = this.options;
    if (config.mesh.enabled) {
      this.logger.warn({ listen: config.listen, trusted_peers: config.mesh.trustedPeers }, "mesh mode: plaintext listener; identities come from the sidecar's x-forwarded-client-cert");
      return ServerCredentials.createInsecure();
    }
    this.reloading = reloadingServerCredentials(config.tls, { intervalMs: config.tls.reloadIntervalMs, logger: this.logger });
    const own = readTlsFiles(config.tls).cert;
    checkOwnTrustDomain(own, config.tls.certFile, config.tls.trustDomain, this.logger);
    checkOwnRole(own, config.tls.certFile, config.services.only);
    return this.reloading.credentials;
  }

  /** The listener that accepts for grpc-js: it refuses connections past the caps and closes those too slow to speak. */
  private guardConnections(credentials: ServerCredentials): ConnectionGuard {
    const { transport, mesh } = this.options.config;
    // Behind a mesh every connection comes from a sidecar: a per-address cap would cap them all.
    const exempt = [...transport.maxConnectionsPerAddressExempt, ...(mesh.enabled ? mesh.trustedPeers : [])];
    const limits = { ...transport, maxConnectionsPerAddressExempt: exempt };
    return new ConnectionGuard({ server: this.server, credentials, limits, logger: this.options.logger, onRefused: this.connectionMetrics.refused });
  }

  /** Binds and serves; resolves with the bound port (useful with port 0). A failed start closes whatever it had opened. */
  async start(credentials?: ServerCredentials): Promise<number> {
    if (this.currentState !== "new") throw new Error(`cannot start a server that is ${this.currentState}`);
    this.currentState = "starting";
    try {
      return await this.open(credentials ?? this.defaultCredentials());
    } catch (err) {
      // Half-started, the process would live on: an admin port answering ok, the journal open, timers running.
      await this.shutdown({ graceMs: 0 }).catch((closing: unknown) => this.logger.warn({ err: closing }, "closing after a failed start failed"));
      throw err;
    }
  }

  private async open(credentials: ServerCredentials): Promise<number> {
    const { config } = this.options;
    // Replicas on etcd bind first (followers answer, naming the leader) and load the journal once elected.
    const clustered = this.runsCoordinator && config.store.kind === "etcd" && !this.options.store;
    if (this.runsCoordinator && !clustered) await this.startCoordinator(this.options.store ?? (await openConfiguredStore(config)));
    const { host, port } = parseListen(this.options.config.listen);
    this.listener = this.guardConnections(credentials);
    this.boundPort = await this.listener.listen(host, port).catch((err: unknown) => {
      throw listenFailure(err, config.listen, "listen");
    });
    if (clustered) {
      const services: ServiceKind[] = ["coordinator", ...(this.runsResourceManager ? (["resource_manager"] as const) : []), ...(this.runsPerformanceMonitor ? (["performance_monitor"] as const) : [])];
      this.cluster = await joinCluster(config, this.options.logger, { address: config.cluster.advertise || `localhost:${this.boundPort}`, services });
      this.cluster.election.onLost(() => void this.shutdown({ graceMs: 0 }));
      // A follower is up but serves neither: health checks send traffic to the leader.
      for (const name of [CoordinatorService.typeName, Control.typeName]) this.health.set(name, ServingStatus.NOT_SERVING);
      void this.leadWhenElected(this.cluster);
    } else if (this.runsCoordinator && config.adminListen) {
      await this.startAdmin();
    }
    if (!this.runsCoordinator && config.store.kind === "etcd" && !this.options.store) {
      // On its own lease (no election: it does not lead), so that coordinators find it there.
      const services: ServiceKind[] = this.runsResourceManager ? ["resource_manager"] : ["performance_monitor"];
      this.registration = await joinRegistry(config, this.options.logger, { address: config.cluster.advertise || `localhost:${this.boundPort}`, services });
    }
    this.currentState = "serving";
    this.logger.info({ listen: `${host}:${this.boundPort}`, serves: [...this.health.services] }, "baton serving");
    return this.boundPort;
  }

  /** Campaigns; once elected, loads the journal from etcd (every write fenced by the term) and serves. */
  private async leadWhenElected(cluster: ClusterMember): Promise<void> {
    const { config } = this.options;
    try {
      const { store } = await cluster.lead();
      if (this.currentState !== "serving") return;
      const started = Date.now();
      await this.startCoordinator(store);
      this.leading = true;
      // Reads are served here from now on: the channel to the former leader goes.
      this.forwarder?.closeFormerLeaders();
      for (const name of [CoordinatorService.typeName, Control.typeName]) this.health.set(name, ServingStatus.SERVING);
      if (config.adminListen) await this.startAdmin();
      this.logger.info({ load_ms: Date.now() - started, address: cluster.address }, "leading: journal loaded from etcd; serving agents and Control");
    } catch (err) {
      if (this.currentState !== "serving") return;
      this.logger.error({ err }, "could not take over as leader; stopping");
      void this.shutdown({ graceMs: 0 });
    }
  }

  /** The coordinator on its journal, its events and metrics. */
  private async startCoordinator(store: Store): Promise<void> {
    const { config, logger } = this.options;
    {
      const rm = config.services.resourceManager;
      const pm = config.services.performanceMonitor;
      const rmFound = !this.runsResourceManager && rm === "registry" ? await this.registryPeer("resource_manager", "resource-manager") : undefined;
      const pmFound = !this.runsPerformanceMonitor && pm === "registry" ? await this.registryPeer("performance_monitor", "performance-monitor") : undefined;
      const resources = this.runsResourceManager ? embeddedResourceManager(this.inventory) : rmFound ? remoteResourceManager(rmFound.resolve, rmFound.breaker, this.logger) : (() => { const p = this.peer(rm, "resource-manager"); return remoteResourceManager(p.channel, p.breaker, this.logger); })();
      const performance = this.runsPerformanceMonitor ? this.performance : pmFound ? remotePerformanceMonitor(() => pmFound.resolve().channel, pmFound.breaker, this.logger) : (() => { const p = this.peer(pm, "performance-monitor"); return remotePerformanceMonitor(p.channel, p.breaker, this.logger); })();
      this.coordinatorInstance = new Coordinator({ config, logger, store, resources, performance });
      this.progress = publishTaskProgress(this.coordinatorInstance, this.events, { intervalMs: config.tasks.progressEventIntervalMs });
      this.unpublish = publishCoordinatorEvents(this.coordinatorInstance, this.events);
      await this.coordinatorInstance.start();
      this.metricsInstance = createCoordinatorMetrics(this.coordinatorInstance, config.coordinatorId, this.registry);
      this.operationsMetrics = createOperationsMetrics(this.coordinatorInstance, config.coordinatorId, this.registry);
    }
  }

  /** The admin endpoint: only once gRPC is bound, as /healthz must not answer ok for a server that could not listen. */
  private async startAdmin(): Promise<void> {
    const { config, logger } = this.options;
    {
      const metrics = this.runsPerformanceMonitor ? () => this.performance.metricsNow({ requestId: "", agentIds: [], window: undefined }) : undefined;
      this.dashboard = createAdminDashboard({ config, control: this.control!, events: this.events, coordinator: this.coordinator, ...(metrics ? { metrics } : {}), access: this.access, logger });
      this.admin = await startAdminServer(parseListen(config.adminListen, "adminListen"), this.registry, this.logger, { notReady: () => this.notReadyReason, ...(this.dashboard ? { routes: this.dashboard.dashboard.handle, tls: this.dashboard.tls } : {}) }).catch((err: unknown) => {
        throw listenFailure(err, config.adminListen, "adminListen");
      });
    }
  }

  /** Why this server should get no traffic now ("" when ready: bound, journal open, not draining), as /readyz answers. */
  get notReadyReason(): string {
    if (this.currentState !== "serving") return `the server is ${this.currentState}`;
    return this.coordinatorInstance?.notReadyReason ?? "";
  }

  /**
   * A graceful stop (SIGTERM): no new work is placed, health says NOT_SERVING and /readyz 503,
   * agents are told to Drain, and directives in flight may finish for up to graceMs (default
   * drainGraceMs); then the server shuts down (completions and the journal flushed), forcing
   * what is still open when the grace runs out. Work not finished stays in the journal.
   */
  async drain(options: { graceMs?: number } = {}): Promise<void> {
    if (this.currentState !== "serving") return this.shutdown(options);
    const { config } = this.options;
    const graceMs = options.graceMs ?? config.drainGraceMs;
    const deadline = Date.now() + graceMs;
    this.currentState = "draining";
    this.health.shutdown();
    const coordinator = this.coordinatorInstance;
    coordinator?.beginDrain("the coordinator is stopping");
    this.logger.info({ grace_ms: graceMs, in_flight: coordinator?.inFlight ?? 0 }, "draining: no new work is placed; directives in flight may finish");
    // Completions arrive on agent streams at their own pace: looked at every few ms, not waited on one by one.
    while (coordinator && coordinator.inFlight > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    const left = coordinator?.inFlight ?? 0;
    if (left > 0) this.logger.warn({ in_flight: left, grace_ms: graceMs }, "drain grace over with directives in flight: they stay in the journal and are replanned after a restart");
    else this.logger.info("drained: every directive in flight has finished");
    // Whatever is left of the grace (at most shutdownGraceMs) closes the calls still open.
    await this.shutdown({ graceMs: Math.min(config.shutdownGraceMs, Math.max(100, deadline - Date.now())) });
  }

  /** Stops taking calls, closes agent sessions, waits up to graceMs for calls to end, then forces. */
  async shutdown(options: { graceMs?: number } = {}): Promise<void> {
    if (this.currentState === "stopped" || this.currentState === "stopping") return;
    const graceMs = options.graceMs ?? this.options.config.shutdownGraceMs;
    this.currentState = "stopping";
    this.listener?.close();
    this.health.shutdown();
    const stopping = this.coordinatorInstance?.shutdown();
    this.shutdownController.abort();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.logger.warn({ grace_ms: graceMs }, "calls still open after the grace period; forcing shutdown");
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await stopping;
    // After the journal's last flush: resigning lets a follower take over at once.
    await this.cluster?.close().catch((err: unknown) => this.logger.warn({ err }, "leaving the replica set failed"));
    await this.registration?.close().catch((err: unknown) => this.logger.warn({ err }, "leaving the service registry failed"));
    for (const p of this.peers) p.close();
    this.access.close();
    this.reloading?.close();
    this.metricsInstance?.detach();
    this.operationsMetrics?.detach();
    this.progress?.stop();
    this.unpublish?.();
    this.events.close();
    this.dashboard?.dashboard.close();
    await this.admin?.close();
    this.currentState = "stopped";
    this.logger.info("baton stopped");
  }
}
