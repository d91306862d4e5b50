import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { create, equals, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { journalKeyHint, type Store as JournalStore } from "../store/index.js";
import { durationFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { Action, AgentState, ResourceSchema } from "../../gen/baton/v1/common_pb.js";
import { CoordinationRoundSchema, CoordinationState, TaskAttemptSchema, TaskSchema, TaskSpecSchema, TaskState, type CoordinationRound, type Task, type TaskSpec } from "../../gen/baton/v1/control_pb.js";
import { MetricsRequestSchema, MetricsUpdateSchema, PerformanceReportSchema, type MetricsRequest, type MetricsUpdate, type PerformanceReport, type SystemMetrics } from "../../gen/baton/v1/performance_monitor_pb.js";
import { ResourceQuerySchema } from "../../gen/baton/v1/resource_manager_pb.js";
import {
  AgentStatusResponseSchema,
  CompletionStatus,
  CoordinationDirectiveSchema,
  DirectiveAckSchema,
  ProgressUpdateSchema,
  TaskCompletionSchema,
  type AgentStatusResponse,
  type CoordinationDirective,
  type DirectiveAck,
  type ProgressUpdate,
  type TaskCompletion,
} from "../../gen/baton/v1/coordination_pb.js";
import { DeliveryState, JournalDirectiveSchema, JournalSessionSchema, type JournalDirective } from "../../gen/baton/v1/journal_pb.js";
import { ConnectResponseSchema, HelloSchema, type AgentReport, type ConnectRequest, type ConnectResponse, type Hello } from "../../gen/baton/v1/session_pb.js";
import type { BatonConfig } from "../config.js";
import { BatonError, Code, deadlineExceeded, failedPrecondition, invalidArgument, notFound, permissionDenied, quote, unauthenticated, unavailable } from "../errors.js";
import { logFailure, logProtocolMessage, type Logger } from "../logging.js";
import { assertHelloFits, assertProtocolValid, assertTaskSpecFits, isValidAgentId, PROTOCOL_VERSION } from "../protocol/index.js";
import type { HandlerContext } from "../rpc/index.js";
import { createKeyring, createReplayGuard, type ClockSkewError, type SpiffeIdentity } from "../security/index.js";
import { generatePlan, labelMatches, type PlanAgent, type PlanTask, type ResourceMove } from "../planner/index.js";
import type { PerformanceSink, ResourceManagerPort } from "./ports.js";
import { delay } from "../streams/index.js";
import { createAgentBreaker, type AgentBreaker, type BreakerState } from "../breakers/index.js";
import { AgentSession, welcomeFrame, type SessionSecurity } from "./agent-session.js";
import { clockSkewRefusal, helloClockSkew } from "./clock-skew.js";
import { DirectiveOutbox, type GiveUp } from "./directive-outbox.js";
import { nextState, type RoundTrigger } from "./round-state.js";
import { TaskJournal } from "./task-journal.js";
import { isOpen, nextTaskState, type TaskEvent } from "./task-state.js";

/** An agent as the coordinator holds it, across sessions. */
export interface AgentRuntime {
  agentId: string;
  state: AgentState;
  hello: Hello;
  identity: string;
  peer: string;
  session: AgentSession | undefined;
  /** The current or last session's id; a Hello naming it resumes. */
  sessionId: string;
  connectedAt: Date;
  lastSeen: number;
  maxInFlight: number;
  draining: boolean;
  outbox: DirectiveOutbox;
  breaker: AgentBreaker;
  /** Settles each delivery's breaker call when the agent answers or is given up on. */
  outcomes: Map<string, { resolve: () => void; reject: (err: Error) => void }>;
  graceTimer: NodeJS.Timeout | undefined;
  dueTimer: NodeJS.Timeout | undefined;
  /** Its clock minus ours, ms, last measured (Hello.sent_at, signed batches); undefined until measured. */
  clockSkewMs: number | undefined;
  /** Why its last session ended or was refused; "" while a session is open. */
  stateReason: string;
  /** When its status (the synced view) last arrived, pushed or asked for; 0: never. */
  statusAt: number;
}

interface TaskRuntime {
  task: Task;
  /** Agents that rejected it: it never goes back to them. */
  excluded: Set<string>;
  /** Not scheduled before this time (retry delay, NAK delay). */
  notBefore: number;
  /** The directives of the current attempt (one, or one per coalition member). */
  directives: Set<string>;
  /** The current attempt's coalition, when the task needs several agents. */
  coalition: CoalitionRuntime | undefined;
  /** Settles when the submit that created it is durable (or failed): a duplicate submit waits for it. */
  created?: Promise<void>;
  /** Its place in creation order: ListTasks pages by it, so a page survives state changes. */
  seq: number;
  /** Its spec's encoded size, counted against tasks.maxOpenBytes while it is open. */
  bytes: number;
}

interface CoalitionRuntime {
  coalitionId: string;
  leader: string;
  /** Member directives that accepted; the coalition is formed when all have. */
  accepted: Set<string>;
  /** Member directives that completed, with their results. */
  completed: Map<string, TaskCompletion>;
  timer: NodeJS.Timeout | undefined;
}

/** What the coordinator reports as it works; WatchEvents and metrics feed on it. */
export interface CoordinatorEvents {
  "agent.online": [agent: AgentRuntime];
  "agent.disconnected": [agent: AgentRuntime, reason: string];
  "agent.offline": [agent: AgentRuntime, reason: string];
  "agent.draining": [agent: AgentRuntime];
  /** A session or a signed batch refused because the agent's clock is beyond the replay window. */
  "agent.clock_skew_refused": [agent: AgentRuntime, skewMs: number];
  "task.updated": [task: Task, reason: string];
  "round.updated": [round: CoordinationRound, reason: string];
  "directive.sent": [directive: CoordinationDirective];
  "directive.ack": [ack: DirectiveAck, directive: CoordinationDirective];
  "directive.progress": [update: ProgressUpdate];
  "directive.completed": [completion: TaskCompletion, directive: CoordinationDirective | undefined];
}

/** Options of the coordinator. */
export interface CoordinatorOptions {
  config: BatonConfig;
  logger: Logger;
  /** The journal's store; the coordinator closes it on shutdown. */
  store: JournalStore;
  /** Milliseconds since the epoch; injected so tests can steer time. */
  now?: () => number;
  /** The Resource Manager (embedded or remote). */
  resources: ResourceManagerPort;
  /** Where MetricsUpdates and PerformanceReports go (the Performance Monitor). */
  performance?: PerformanceSink;
}

interface RoundRuntime {
  round: CoordinationRound;
  startedAt: number;
  open: Set<string>;
  /** Tasks of this round to plan again (adjustment_needed). */
  replan: Set<string>;
  /** Whether the round is planning right now. */
  planningNow: boolean;
  succeeded: number;
  failed: number;
  directives: number;
  completionMs: Map<string, number[]>;
}

const TERMINAL = new Set([TaskState.SUCCEEDED, TaskState.DEAD_LETTERED, TaskState.CANCELLED]);
// Outcomes that count against a task's maxAttempts; losing an agent or a NAK does not.
const COUNTED = new Set(["directive_failed", "lease_expired", "rejected", "coalition_not_formed"]);
// The embedded participants, as logs name them.
const PM = "performance-monitor";
const RM = "resource-manager";
// Remember settled completions so a resent TaskCompletion is acknowledged, not applied twice.
const SETTLED_MEMORY = 100_000;
// Written to learn whether the journal takes writes again after one failed.
const WRITE_PROBE_KEY = "probe/writable";

const compareIds = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function actionOf(d: CoordinationDirective): string {
  return d.parameters?.kind.case === "formCoalition" ? "form_coalition" : d.parameters?.kind.case === "adjustResources" ? "adjust_resources" : "assign_task";
}

function timestampMsOf(d: CoordinationDirective): number {
  return d.timestamp ? Number(d.timestamp.seconds) * 1000 + d.timestamp.nanos / 1e6 : 0;
}

function isCoalition(spec: TaskSpec): boolean {
  return !!spec.coalition && Math.max(spec.coalition.size, spec.coalition.roles.length) >= 2;
}

/** Whether a task state is final. */
export function isTerminal(state: TaskState): boolean {
  return TERMINAL.has(state);
}

function directiveFor(task: Task, agentId: string, correlationId: string, resources: string[]): CoordinationDirective {
  const spec = task.spec!;
  return create(CoordinationDirectiveSchema, {
    directiveId: randomUUID(),
    timestamp: timestampNow(),
    targetAgent: agentId,
    action: Action.ASSIGN_TASK,
    correlationId,
    parameters: {
      kind: {
        case: "assignTask",
        value: {
          taskId: spec.taskId,
          priority: spec.priority,
          requiredCapabilities: spec.requiredCapabilities,
          resources,
          ...(spec.input ? { input: spec.input } : {}),
          ...(spec.deadline ? { deadline: spec.deadline } : {}),
        },
      },
    },
  });
}

/**
 * The coordinator's message handler and state tracker: agent sessions over Connect,
 * durable tasks, directive delivery with acks, retries, leases and circuit breakers,
 * and the spec's error handling (agent_unavailable, resource_conflict, directive_failed).
 */
export class Coordinator extends EventEmitter<CoordinatorEvents> {
  private readonly agentsById = new Map<string, AgentRuntime>();
  private readonly tasks = new Map<string, TaskRuntime>();
  /** Every task in creation order (ListTasks), the pending ones (scheduling), counts by state: kept by moveTask. */
  private readonly order: TaskRuntime[] = [];
  private readonly pendingTasks = new Set<TaskRuntime>();
  private readonly stateCounts = new Map<TaskState, number>();
  private open = { tasks: 0, bytes: 0 };
  /** Live (unsettled) directives. */
  private readonly directives = new Map<string, JournalDirective>();
  /** Every directive of a task still open, superseded ones included: a late success still counts. */
  private readonly directiveTask = new Map<string, { taskId: string; agentId: string; coalition?: boolean }>();
  private readonly settled = new Set<string>();
  private readonly logger: Logger;
  private readonly config: BatonConfig;
  private readonly store: JournalStore;
  private journal: TaskJournal;
  private readonly now: () => number;
  /** Whether a failed journal write has the coordinator waiting to reload its state. */
  private recovering = false;
  /** Bumped when the in-memory state is dropped: work begun before then must not touch the reloaded state. */
  private epoch = 0;
  private scheduleQueued = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** The Resource Manager: what agents offer and what is reserved on it. */
  private readonly inventory: ResourceManagerPort;
  private readonly performance: PerformanceSink | undefined;
  private readonly rounds = new Map<string, RoundRuntime>();
  private readonly taskRound = new Map<string, string>();
  private readonly recentRounds: CoordinationRound[] = [];
  /** Agents and tasks claimed by rounds that are planning now: concurrent rounds never share them. */
  private readonly claimedAgents = new Set<string>();
  private readonly claimedTasks = new Set<string>();
  /** Utilization each agent reported in its latest status response. */
  private readonly reportedUtilization = new Map<string, number>();
  private replanRequested = false;
  private readonly triggers = new Set<string>();

  constructor(options: CoordinatorOptions) {
    super();
    this.inventory = options.resources;
    this.performance = options.performance;
    this.config = options.config;
    this.logger = options.logger.child({ component: "coordinator" });
    this.store = options.store;
    this.journal = this.openJournal();
    this.now = options.now ?? Date.now;
  }

  /** Loads the journal: tasks and directives survive restarts; their agents may resume. */
  async start(): Promise<void> {
    await this.load();
    this.requestSchedule();
  }

  private openJournal(): TaskJournal {
    return new TaskJournal(this.store, (err) => this.onJournalFailed(err));
  }

  /**
   * A journal write failed (a full disk, an I/O error). What memory holds beyond the journal
   * was never acknowledged, and nothing built on it may leave the process, so it is dropped:
   * sessions end with UNAVAILABLE (agents keep their unacknowledged completions), calls are
   * refused with UNAVAILABLE, and once a probe write succeeds the state is reloaded from the
   * journal, as after a restart.
   */
  private onJournalFailed(err: unknown): void {
    if (this.stopping || this.recovering) return;
    this.recovering = true;
    this.epoch++;
    this.logger.error({ err }, "journal write failed: the coordinator takes no work and reloads the journal once it can write again");
    const reason = unavailable("the coordinator's journal cannot be written; reconnect later");
    clearTimeout(this.wakeTimer);
    for (const id of this.directives.keys()) this.inventory.release(id).catch(() => {});
    for (const rt of this.tasks.values()) clearTimeout(rt.coalition?.timer);
    for (const agent of this.agentsById.values()) {
      clearTimeout(agent.graceTimer);
      clearTimeout(agent.dueTimer);
      agent.breaker.shutdown();
      for (const outcome of agent.outcomes.values()) outcome.resolve();
      const session = agent.session;
      agent.session = undefined;
      session?.close(reason);
    }
    for (const map of [this.agentsById, this.tasks, this.directives, this.directiveTask, this.rounds, this.taskRound, this.reportedUtilization]) map.clear();
    for (const set of [this.settled, this.claimedAgents, this.claimedTasks, this.triggers, this.pendingTasks]) set.clear();
    this.clearTaskIndex();
    void this.recover();
  }

  private async recover(): Promise<void> {
    for (let waitMs = 100; !this.stopping; waitMs = Math.min(waitMs * 2, 5000)) {
      await delay(waitMs);
      try {
        await this.store.write([{ type: "put", key: WRITE_PROBE_KEY, value: new Uint8Array(0) }]);
        this.journal = this.openJournal();
        await this.load();
      } catch (err) {
        this.logger.debug({ err: (err as Error).message, retry_ms: waitMs }, "journal still cannot be written");
        for (const map of [this.agentsById, this.tasks, this.directives, this.directiveTask]) map.clear();
        this.clearTaskIndex();
        continue;
      }
      this.recovering = false;
      this.logger.info("journal writable again: state reloaded from it");
      this.requestSchedule();
      return;
    }
  }

  /** Refuses calls while the state is being reloaded after a failed journal write. */
  private assertServing(): void {
    if (this.stopping) throw unavailable("the coordinator is shutting down");
    if (this.recovering) throw unavailable("the coordinator's journal cannot be written right now (is the disk full?); it takes work again once it can");
  }

  /** Resolves once every change made so far is durable: answers wait for it, so none shows a state the journal may not keep. */
  async durable(): Promise<void> {
    this.assertServing();
    await this.journal.barrier().catch(() => {
      throw unavailable("the coordinator's journal cannot be written right now (is the disk full?)");
    });
  }

  /** Commits a change whose caller waits on it; a failed write is UNAVAILABLE for the caller. */
  private async durably(change: Parameters<TaskJournal["commit"]>[0], what: string): Promise<void> {
    try {
      await this.journal.commit(change);
    } catch {
      throw unavailable(`${what} could not be made durable (the journal cannot be written); try again`);
    }
  }

  /** Commits a change no caller waits on; a failure is handled once, by onJournalFailed. */
  private record(change: Parameters<TaskJournal["commit"]>[0]): Promise<void> {
    const written = this.journal.commit(change);
    written.catch(() => {});
    return written;
  }

  /** Publishes a task's change once it is durable, as it was when it changed. */
  private publishTask(task: Task, reason: string): void {
    const snapshot: Task = { ...task, attempts: task.attempts.map((a) => ({ ...a })), assignedAgents: [...task.assignedAgents] };
    const epoch = this.epoch;
    this.journal.barrier().then(
      () => epoch === this.epoch && this.emit("task.updated", snapshot, reason),
      () => {},
    );
  }

  private async load(): Promise<void> {
    const { tasks, directives, sessions } = await this.journal.load();
    // The journal holds tasks by id; creation order is rebuilt once, here.
    tasks.sort((a, b) => Number((a.createdAt?.seconds ?? 0n) - (b.createdAt?.seconds ?? 0n)) || (a.createdAt?.nanos ?? 0) - (b.createdAt?.nanos ?? 0) || compareIds(a.spec!.taskId, b.spec!.taskId));
    for (const task of tasks) this.addTask(this.taskRuntime(task));
    const sessionOf = new Map(sessions.map((s) => [s.agentId, s]));
    const now = this.now();
    for (const jd of directives) {
      const d = jd.directive!;
      const rt = this.tasks.get(jd.taskId);
      if (!rt || isTerminal(rt.task.state)) continue;
      this.directiveTask.set(d.directiveId, { taskId: jd.taskId, agentId: jd.agentId, coalition: d.parameters?.kind.case === "formCoalition" });
      if (jd.state === DeliveryState.SETTLED) continue;
      const agent = this.agentRuntime(jd.agentId, sessionOf.get(jd.agentId)?.sessionId ?? jd.sessionId);
      agent.outbox.restore(d, jd.state === DeliveryState.ACCEPTED ? "accepted" : "sent", now);
      await this.reserveFor(rt.task, d, jd.agentId);
      this.directives.set(d.directiveId, jd);
      rt.directives.add(d.directiveId);
      if (d.parameters?.kind.case === "formCoalition") {
        const params = d.parameters.kind.value;
        rt.coalition ??= { coalitionId: params.coalitionId, leader: params.leader, accepted: new Set(), completed: new Map(), timer: undefined };
        if (jd.state === DeliveryState.ACCEPTED) rt.coalition.accepted.add(d.directiveId);
      }
      this.track(agent, d.directiveId);
    }
    // A task assigned when the coordinator stopped is pending again unless its directive was restored.
    for (const rt of this.order) if ((rt.task.state === TaskState.ASSIGNED || rt.task.state === TaskState.RUNNING) && rt.directives.size === 0) this.moveTask(rt, "restored");
    for (const s of sessions) {
      // Every journaled session may resume, an idle agent's as much as one with work out.
      const agent = this.agentRuntime(s.agentId, s.sessionId);
      if (s.nextSequence > agent.outbox.nextSequence) agent.outbox = this.newOutbox(agent.maxInFlight, s.nextSequence, agent.outbox);
    }
    // Agents with work out have the grace period to come back and resume.
    // Not coming back is no failure of the agent's own (the coordinator went away): no breaker trips for it.
    for (const agent of this.agentsById.values()) this.startGrace(agent, "the coordinator restarted", true);
    // Resources from configuration go to the Resource Manager like an agent's own.
    const configured = new Map<string, Array<(typeof this.config.resources)[number]>>();
    for (const r of this.config.resources) configured.set(r.agentId, [...(configured.get(r.agentId) ?? []), r]);
    for (const [agentId, list] of configured) {
      await this.inventory.register(agentId, list.map((r) => create(ResourceSchema, { resourceId: r.resourceId, kind: r.kind, capacity: r.capacity })));
    }
    const open = [...this.tasks.values()].filter((t) => !isTerminal(t.task.state)).length;
    this.logger.info({ tasks: tasks.length, open, directives: this.directives.size }, "journal loaded");
  }

  // ---------------------------------------------------------------- agents

  private newOutbox(maxInFlight: number, firstSequence = 1n, from?: DirectiveOutbox): DirectiveOutbox {
    const outbox = new DirectiveOutbox({ ...this.config.delivery, ackTimeoutMs: this.config.session.ackTimeoutMs }, maxInFlight, firstSequence);
    for (const entry of from?.list() ?? []) outbox.restore(entry.directive, entry.state, this.now());
    return outbox;
  }

  private agentRuntime(agentId: string, sessionId = ""): AgentRuntime {
    let rt = this.agentsById.get(agentId);
    if (rt) return rt;
    const created: AgentRuntime = {
      agentId,
      state: AgentState.DISCONNECTED,
      hello: create(HelloSchema, { agentId }),
      identity: "",
      peer: "",
      session: undefined,
      sessionId,
      connectedAt: new Date(this.now()),
      lastSeen: this.now(),
      maxInFlight: this.config.session.defaultMaxInFlight,
      draining: false,
      outbox: this.newOutbox(this.config.session.defaultMaxInFlight),
      breaker: createAgentBreaker(
        agentId,
        this.config.breaker,
        this.logger,
        (state) => this.onBreaker(created, state),
      ),
      outcomes: new Map(),
      graceTimer: undefined,
      dueTimer: undefined,
      clockSkewMs: undefined,
      stateReason: "",
      statusAt: 0,
    };
    rt = created;
    this.agentsById.set(agentId, rt);
    return rt;
  }

  private onBreaker(agent: AgentRuntime, state: BreakerState): void {
    if (state === "open") {
      if (agent.state !== AgentState.OFFLINE) this.markOffline(agent, "agent_unavailable: circuit open");
    } else if (agent.session) {
      // Half-open or closed with a live session: back in service (a half-open breaker lets one probe through).
      agent.state = agent.draining ? AgentState.DRAINING : AgentState.ONLINE;
      this.emit("agent.online", agent);
      this.requestSchedule();
    }
  }

  /** The agent is gone: its work is replanned. `openBreaker: false` when it left cleanly, which is no failure of its own. */
  private markOffline(agent: AgentRuntime, reason: string, options: { openBreaker?: boolean } = {}): void {
    agent.state = AgentState.OFFLINE;
    agent.stateReason = reason;
    clearTimeout(agent.graceTimer);
    agent.graceTimer = undefined;
    this.logger.warn({ agent_id: agent.agentId, reason }, "agent offline: its work is replanned");
    this.emit("agent.offline", agent, reason);
    this.requestSchedule("agent_lost");
    if (options.openBreaker !== false) agent.breaker.open();
    this.handBack(agent, agent.outbox.drainAll().map((e) => ({ directive: e.directive, accepted: e.state === "accepted" })), "agent_unavailable");
  }

  private startGrace(agent: AgentRuntime, reason: string, clean = false): void {
    clearTimeout(agent.graceTimer);
    agent.graceTimer = setTimeout(() => {
      agent.graceTimer = undefined;
      if (!agent.session && agent.state !== AgentState.OFFLINE) this.markOffline(agent, `agent_unavailable: did not return within ${this.config.session.disconnectGraceMs} ms (${reason})`, { openBreaker: !clean });
    }, this.config.session.disconnectGraceMs);
    agent.graceTimer.unref();
  }

  /** The agents known, sorted by id. */
  agents(): AgentRuntime[] {
    return [...this.agentsById.keys()].sort().map((id) => this.agentsById.get(id)!);
  }

  /** One agent. */
  agent(agentId: string): AgentRuntime | undefined {
    const rt = this.agentsById.get(agentId);
    if (rt?.session) rt.lastSeen = rt.session.lastSeen;
    return rt;
  }

  // ---------------------------------------------------------------- sessions

  /** The Coordinator.Connect handler: one agent session per stream. */
  connect = (requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncIterable<ConnectResponse> => this.runSession(requests, ctx);

  private async *runSession(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncGenerator<ConnectResponse> {
    this.assertServing();
    const iterator = requests[Symbol.asyncIterator]();
    const hello = await this.readHello(iterator, ctx);
    const identity = ctx.identity as SpiffeIdentity | undefined;
    this.authorizeHello(hello, identity);
    // Measured on the replay guard's clock (the wall clock): a skew it would refuse ends the session here, before any work.
    const skew = helloClockSkew(hello, this.config.security.messageSecurity === "off" ? undefined : this.config.security.replayWindowMs, Date.now());
    if (skew) this.agentRuntime(hello.agentId).clockSkewMs = skew.skewMs;
    if (skew?.refusal) {
      this.onClockSkewRefused(this.agentRuntime(hello.agentId), skew.refusal);
      yield* clockSkewRefusal(skew.refusal, { coordinatorId: this.config.coordinatorId, protocolVersion: PROTOCOL_VERSION });
    }
    // The agent's inventory goes to the Resource Manager; a resource another agent offers refuses the session.
    await this.inventory.register(hello.agentId, hello.resources);
    this.assertServing();
    const cfg = this.config.session;
    const maxInFlight = Math.min(hello.maxInFlight || cfg.defaultMaxInFlight, cfg.maxInFlightLimit);
    const agent = this.agentRuntime(hello.agentId);
    const resumed = hello.sessionId !== "" && hello.sessionId === agent.sessionId && agent.state !== AgentState.OFFLINE;
    const sessionId = resumed ? agent.sessionId : randomUUID();
    // Not ctx.logger: protocol lines carry each message's own correlation_id, not the stream's.
    const logger = this.logger.child({ agent_id: hello.agentId, session_id: sessionId });
    const session: AgentSession = new AgentSession({
      agentId: hello.agentId,
      sessionId,
      hello,
      identity: identity?.uri ?? "",
      peer: ctx.peer.address,
      coordinatorId: this.config.coordinatorId,
      protocolVersion: PROTOCOL_VERSION,
      heartbeatIntervalMs: cfg.heartbeatIntervalMs,
      heartbeatMisses: cfg.heartbeatMisses,
      maxInFlight,
      outboxCapacity: cfg.outboxCapacity,
      maxBatch: cfg.maxBatch,
      logger,
      protocolLevel: this.config.log.protocolLevel,
      onClose: (s, error) => this.onSessionClosed(agent, s, error),
      security: this.sessionSecurity(),
      onClockSkew: (skewMs, refusal) => (refusal ? this.onClockSkewRefused(agent, refusal) : void (agent.clockSkewMs = skewMs)),
    });
    const replaced = agent.session;
    agent.session = session;
    replaced?.close(new BatonError(Code.ABORTED, `session replaced by a newer session of agent ${hello.agentId}`));
    if (resumed) {
      // Whatever was written to the old stream and not acknowledged is replayed, in order.
      agent.outbox.disconnect();
    } else {
      // A new session: what the agent held under its old one is gone with it.
      this.handBack(agent, agent.outbox.drainAll().map((e) => ({ directive: e.directive, accepted: e.state === "accepted" })), "agent_unavailable");
      agent.outbox = this.newOutbox(maxInFlight);
    }
    agent.outbox.maxInFlight = maxInFlight;
    Object.assign(agent, { hello, identity: session.identity, peer: session.peer, sessionId, connectedAt: session.connectedAt, lastSeen: session.lastSeen, maxInFlight, draining: false, stateReason: "" });
    clearTimeout(agent.graceTimer);
    agent.graceTimer = undefined;
    agent.state = agent.breaker.state === "open" ? AgentState.OFFLINE : AgentState.ONLINE;
    logger.info({ max_in_flight: maxInFlight, peer: ctx.peer.address, resumed, last_sequence: String(hello.lastSequence), replaced: replaced?.sessionId, breaker: agent.breaker.state, clock_skew_ms: skew?.skewMs }, "agent session opened");
    void this.record({ sessions: [create(JournalSessionSchema, { agentId: agent.agentId, sessionId, nextSequence: agent.outbox.nextSequence, lastSeen: timestampNow() })] });
    if (agent.state === AgentState.ONLINE) this.emit("agent.online", agent);

    // The signal's reason says who ended it: the agent (CANCELLED), shutdown, or a revoked certificate.
    const onCancel = () => session.close(ctx.signal.reason instanceof BatonError ? ctx.signal.reason : new BatonError(Code.CANCELLED, "the agent cancelled its session"));
    ctx.signal.addEventListener("abort", onCancel, { once: true });
    void this.readReports(iterator, agent, session, logger);
    queueMicrotask(() => {
      this.pump(agent);
      this.requestSchedule("agent_joined");
    });
    try {
      yield* session.frames(welcomeFrame(session, { heartbeatIntervalMs: cfg.heartbeatIntervalMs, ackTimeoutMs: cfg.ackTimeoutMs, syncIntervalMs: cfg.syncIntervalMs, coordinatorId: this.config.coordinatorId, protocolVersion: PROTOCOL_VERSION, resumed }));
    } finally {
      ctx.signal.removeEventListener("abort", onCancel);
      session.close();
    }
  }

  private async readHello(iterator: AsyncIterator<ConnectRequest>, ctx: HandlerContext): Promise<Hello> {
    const timeout = new AbortController();
    const ms = this.config.session.helloTimeoutMs;
    const timer = delay(ms, AbortSignal.any([timeout.signal, ctx.signal])).then(
      () => Promise.reject(deadlineExceeded(`no hello within ${ms} ms of opening Connect`)),
      () => new Promise<never>(() => {}),
    );
    let first: IteratorResult<ConnectRequest>;
    try {
      first = await Promise.race([iterator.next(), timer]);
    } finally {
      timeout.abort();
    }
    if (first.done) throw invalidArgument("Connect closed before hello");
    const kind = first.value.kind;
    if (kind.case !== "hello") throw invalidArgument(`the first message on Connect must be hello, got ${kind.case ?? "an empty ConnectRequest"}`);
    return kind.value;
  }

  private authorizeHello(hello: Hello, identity: SpiffeIdentity | undefined): void {
    assertProtocolValid(HelloSchema, hello);
    // What an agent offers is copied into every ListAgents answer and agent event: bounded here.
    assertHelloFits(hello, this.config.limits);
    if (!isValidAgentId(hello.agentId)) throw invalidArgument(`Hello: agent_id ${quote(hello.agentId)} must be 1 to 128 of A-Z a-z 0-9 . _ -`);
    if (!identity) throw unauthenticated("Connect needs a client certificate with a SPIFFE id");
    if (identity.role !== "managed_agent") throw permissionDenied(`${identity.uri} has role ${identity.role}; only managed_agent may open an agent session`);
    if (identity.name !== hello.agentId) throw permissionDenied(`certificate ${identity.uri} may not connect as agent ${quote(hello.agentId)}`);
    if (hello.protocolVersion && hello.protocolVersion.split(".")[0] !== PROTOCOL_VERSION.split(".")[0]) {
      throw failedPrecondition(`protocol version ${hello.protocolVersion} is not supported; this coordinator speaks ${PROTOCOL_VERSION}`);
    }
    const seen = new Set<string>();
    hello.resources.forEach((resource, i) => {
      if (!resource.resourceId) throw invalidArgument(`Hello: resources[${i}].resource_id is required`);
      if (seen.has(resource.resourceId)) throw invalidArgument(`Hello: resources[${i}].resource_id ${quote(resource.resourceId)} is listed twice`);
      if (!(resource.capacity >= 0)) throw invalidArgument(`Hello: resources[${i}].capacity must be 0 or more`);
      seen.add(resource.resourceId);
    });
    hello.capabilities.forEach((capability, i) => {
      if (!capability.trim()) throw invalidArgument(`Hello: capabilities[${i}] is empty`);
    });
  }

  private async readReports(iterator: AsyncIterator<ConnectRequest>, agent: AgentRuntime, session: AgentSession, logger: Logger): Promise<void> {
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done || session.isClosed) break;
        session.touch();
        agent.lastSeen = session.lastSeen;
        this.handleFrame(next.value, agent, session, logger);
      }
      session.close();
    } catch (err) {
      // Once the session has ended, the stream's own end status comes back here: nothing failed.
      if (session.isClosed) return;
      const error = BatonError.from(err);
      if (error.code === Code.INTERNAL) logFailure(logger, err, "agent session failed");
      session.close(error);
    }
  }

  private handleFrame(frame: ConnectRequest, agent: AgentRuntime, session: AgentSession, logger: Logger): void {
    const kind = frame.kind;
    switch (kind.case) {
      case "heartbeat":
        logger.trace("heartbeat");
        return;
      case "reports":
        if (session.signed) throw unauthenticated("this coordinator requires signed reports: send signed_reports under the session key from Welcome");
        if (kind.value.sender && kind.value.sender !== session.agentId) {
          throw permissionDenied(`agent ${session.agentId} may not send reports as ${JSON.stringify(kind.value.sender)}`);
        }
        for (const report of kind.value.reports) this.handleReport(report, agent, session, logger);
        this.pump(agent);
        return;
      case "hello":
        throw invalidArgument("hello may be sent only once per session");
      case "signedReports": {
        const batch = session.openReports(kind.value);
        for (const report of batch.reports) this.handleReport(report, agent, session, logger);
        this.pump(agent);
        return;
      }
      default:
        throw invalidArgument("ConnectRequest: kind is required (hello, heartbeat or reports)");
    }
  }

  /** A new session's message keys and replay guard, when message security is on. */
  private sessionSecurity(): SessionSecurity | undefined {
    const sec = this.config.security;
    if (sec.messageSecurity === "off") return undefined;
    return {
      keyring: createKeyring({ rotationMs: sec.keyRotationMs, graceMs: sec.keyGraceMs, onListenerError: (err) => this.logger.error({ err }, "key rotation listener failed") }),
      replay: createReplayGuard({ windowMs: sec.replayWindowMs }),
      sensitiveInputOf: (directive) => {
        const owner = this.directiveTask.get(directive.directiveId);
        return owner ? this.tasks.get(owner.taskId)?.task.spec?.sensitiveInput : undefined;
      },
    };
  }

  private checkSource(source: string, session: AgentSession, what: string): void {
    if (source !== session.agentId) throw permissionDenied(`agent ${session.agentId} may not send ${what} as ${JSON.stringify(source)}`);
  }

  private logReceived(session: AgentSession, correlationId: string, messageType: string, logger: Logger): void {
    logProtocolMessage(logger, { correlation_id: correlationId, source: session.agentId, destination: this.config.coordinatorId, message_type: messageType }, "received", this.config.log.protocolLevel);
  }

  /** The task a directive belongs to, refusing another agent's directive. */
  private ownDirective(directiveId: string, session: AgentSession, what: string): { taskId: string; agentId: string; coalition?: boolean } | undefined {
    const owner = this.directiveTask.get(directiveId);
    if (owner && owner.agentId !== session.agentId) {
      throw permissionDenied(`agent ${session.agentId} may not send ${what} for directive ${directiveId} of agent ${owner.agentId}`);
    }
    return owner;
  }

  private handleReport(report: AgentReport, agent: AgentRuntime, session: AgentSession, logger: Logger): void {
    const kind = report.kind;
    const now = this.now();
    switch (kind.case) {
      case "statusResponse": {
        assertProtocolValid(AgentStatusResponseSchema, kind.value);
        this.checkSource(kind.value.sourceAgent, session, "a status response");
        this.logReceived(session, session.statusCorrelation(kind.value.requestId), "agent_status_response", logger);
        // Asked for or pushed (the synced view, at most once per sync interval): either way the view is fresh.
        session.resolveStatus(kind.value);
        agent.statusAt = now;
        this.reportedUtilization.set(agent.agentId, kind.value.resourceUtilization);
        return;
      }
      case "directiveAck": {
        const ack = kind.value;
        assertProtocolValid(DirectiveAckSchema, ack);
        this.checkSource(ack.sourceAgent, session, "an ack");
        const owner = this.ownDirective(ack.directiveId, session, "an ack");
        const jd = this.directives.get(ack.directiveId);
        this.logReceived(session, jd?.directive?.correlationId || ack.directiveId, "directive_ack", logger);
        if (!owner || !jd) {
          logger.debug({ directive_id: ack.directiveId }, "ack for a directive no longer out");
          return;
        }
        const result = agent.outbox.ack(ack, now);
        if (result.kind === "stale" || result.kind === "unknown") {
          logger.debug({ directive_id: ack.directiveId, attempt: ack.attempt }, "stale ack ignored");
          return;
        }
        // The agent answered: for its breaker, that is a success whatever it said.
        this.settleOutcome(agent, ack.directiveId);
        this.emit("directive.ack", ack, result.directive);
        if (result.kind === "accepted") this.onAccepted(jd);
        else if (result.kind === "rejected") this.endAttempt(jd, "rejected", `rejected by ${agent.agentId}: ${result.reason}`, { exclude: agent.agentId });
        else this.endAttempt(jd, "deferred", `deferred by ${agent.agentId}: ${result.reason || "not now"}`, { delayMs: result.retryAfterMs });
        return;
      }
      case "progressUpdate": {
        const update = kind.value;
        assertProtocolValid(ProgressUpdateSchema, update);
        this.checkSource(update.sourceAgent, session, "progress");
        if (update.directiveId) this.ownDirective(update.directiveId, session, "progress");
        const jd = update.directiveId ? this.directives.get(update.directiveId) : undefined;
        this.logReceived(session, jd?.directive?.correlationId || update.eventId, "progress_update", logger);
        if (update.directiveId) agent.outbox.progress(update.directiveId, now);
        // Step 6: progress goes on to the Performance Monitor as a MetricsUpdate.
        if (this.performance) this.logParticipant(jd?.directive?.correlationId || update.eventId, this.config.coordinatorId, PM, "metrics_update");
        this.performance?.recordUpdate(
          create(MetricsUpdateSchema, { eventId: update.eventId, timestamp: update.timestamp, sourceAgent: update.sourceAgent, directiveId: update.directiveId, resourceUtilization: update.metrics?.resourceUtilization ?? 0, completionPercentage: update.metrics?.completionPercentage ?? 0, custom: { ...(update.metrics?.custom ?? {}), in_flight: agent.outbox.inFlight } }),
        );
        this.emit("directive.progress", update);
        return;
      }
      case "taskCompletion": {
        const completion = kind.value;
        assertProtocolValid(TaskCompletionSchema, completion);
        this.checkSource(completion.sourceAgent, session, "a completion");
        const owner = this.ownDirective(completion.directiveId, session, "a completion");
        const jd = this.directives.get(completion.directiveId);
        const correlationId = jd?.directive?.correlationId || completion.directiveId;
        this.logReceived(session, correlationId, "task_completion", logger);
        void this.onCompletion(completion, owner, agent).then(
          () => {
            // Acknowledged only once durable: the agent keeps the completion until then.
            session.send(
              { $typeName: "baton.v1.CoordinatorMessage", kind: { case: "completionAck", value: { $typeName: "baton.v1.CompletionAck", eventId: completion.eventId, directiveId: completion.directiveId } } },
              correlationId,
            );
          },
          (err: unknown) => logger.warn({ err: (err as Error).message, directive_id: completion.directiveId }, "completion not recorded; the agent will resend it"),
        );
        return;
      }
      default:
        throw invalidArgument("AgentReport: kind is required");
    }
  }

  /** A clock-skew refusal: logged at warn with the skew, counted (agent.clock_skew_refused), and shown on the agent. */
  private onClockSkewRefused(agent: AgentRuntime, refusal: ClockSkewError): void {
    agent.clockSkewMs = refusal.skewMs;
    agent.stateReason = refusal.message;
    this.logger.warn({ agent_id: agent.agentId, skew_ms: Math.round(refusal.skewMs), replay_window_ms: refusal.windowMs, reason: refusal.message }, "agent refused for clock skew");
    this.emit("agent.clock_skew_refused", agent, refusal.skewMs);
  }

  private onSessionClosed(agent: AgentRuntime, session: AgentSession, error: BatonError | undefined): void {
    if (agent.session !== session) return;
    agent.session = undefined;
    agent.lastSeen = session.lastSeen;
    agent.outbox.disconnect();
    clearTimeout(agent.dueTimer);
    const reason = error?.message ?? "the agent closed its session";
    agent.stateReason = reason;
    this.logger.info({ agent_id: agent.agentId, session_id: session.sessionId, reason }, "agent session closed");
    if (agent.state !== AgentState.OFFLINE) {
      agent.state = AgentState.DISCONNECTED;
      // An agent that ended its stream itself (a half-close) left cleanly: that trips no breaker.
      this.startGrace(agent, reason, error === undefined);
    }
    this.emit("agent.disconnected", agent, reason);
  }

  // ---------------------------------------------------------------- delivery

  private track(agent: AgentRuntime, directiveId: string): Promise<void> {
    const outcome = new Promise<void>((resolve, reject) => agent.outcomes.set(directiveId, { resolve, reject }));
    // Directives restored from the journal have no breaker call awaiting them; their failure is handled here, not thrown.
    outcome.catch(() => {});
    return outcome;
  }

  private settleOutcome(agent: AgentRuntime, directiveId: string, failure?: Error): void {
    const outcome = agent.outcomes.get(directiveId);
    if (!outcome) return;
    agent.outcomes.delete(directiveId);
    if (failure) outcome.reject(failure);
    else outcome.resolve();
  }

  /** Writes what the outbox lets out, handles what it gave up, and sets the next wake-up. */
  private pump(agent: AgentRuntime): void {
    const now = this.now();
    for (const giveUp of agent.outbox.expire(now)) this.onGiveUp(agent, giveUp);
    if (agent.session && agent.state !== AgentState.OFFLINE) {
      for (const directive of agent.outbox.take(now)) {
        agent.session.send({ $typeName: "baton.v1.CoordinatorMessage", kind: { case: "directive", value: directive } }, directive.correlationId);
        this.emit("directive.sent", directive);
      }
    }
    clearTimeout(agent.dueTimer);
    const due = agent.outbox.nextDue();
    if (due !== undefined && agent.session) {
      agent.dueTimer = setTimeout(() => this.pump(agent), Math.max(1, due - this.now()));
      agent.dueTimer.unref();
    }
  }

  private onGiveUp(agent: AgentRuntime, giveUp: GiveUp): void {
    const id = giveUp.directive.directiveId;
    const jd = this.directives.get(id);
    if (giveUp.reason === "exhausted") {
      // Retries spent without an ack: agent_unavailable, no further retry to it.
      this.settleOutcome(agent, id, new Error(`agent ${agent.agentId} did not acknowledge directive ${id} after ${this.config.delivery.retryCount} retries`));
      if (jd) this.endAttempt(jd, "agent_unavailable", `agent ${agent.agentId} did not acknowledge after ${this.config.delivery.retryCount} retries`, { exclude: undefined });
      if (agent.state !== AgentState.OFFLINE) this.markOffline(agent, `agent_unavailable: directive ${id} unacknowledged after ${this.config.delivery.retryCount} retries`);
    } else {
      // No progress within the lease: stop it on the agent and try again.
      agent.session?.send({ $typeName: "baton.v1.CoordinatorMessage", kind: { case: "cancel", value: { $typeName: "baton.v1.DirectiveCancel", directiveId: id, taskId: jd?.taskId ?? "", reason: "lease expired" } } }, giveUp.directive.correlationId);
      if (jd) this.endAttempt(jd, "lease_expired", `no progress from ${agent.agentId} within ${this.config.delivery.leaseMs} ms`, {});
    }
  }

  private handBack(agent: AgentRuntime, entries: Array<{ directive: CoordinationDirective; accepted: boolean }>, outcome: string): void {
    for (const { directive, accepted } of entries) {
      this.settleOutcome(agent, directive.directiveId, new Error(`handed back: ${outcome}`));
      const jd = this.directives.get(directive.directiveId);
      if (jd) this.endAttempt(jd, outcome, accepted ? `agent ${agent.agentId} was lost while running it (re-execution)` : `agent ${agent.agentId} was lost before acknowledging it`, {});
    }
  }

  private onAccepted(jd: JournalDirective): void {
    const rt = this.tasks.get(jd.taskId);
    jd.state = DeliveryState.ACCEPTED;
    const change: Parameters<TaskJournal["commit"]>[0] = { directives: [jd] };
    const id = jd.directive!.directiveId;
    rt?.coalition?.accepted.add(id);
    // A coalition runs once every member has accepted (gang scheduling); a lone directive at once.
    const formed = !rt?.coalition || rt.coalition.accepted.size === rt.directives.size;
    if (rt && formed && rt.coalition) clearTimeout(rt.coalition.timer);
    if (rt && rt.directives.has(id) && formed && rt.task.state === TaskState.ASSIGNED) {
      this.moveTask(rt, "accepted");
      rt.task.updatedAt = timestampNow();
      change.tasks = [rt.task];
      this.publishTask(rt.task, "accepted");
    }
    void this.record(change);
  }

  /**
   * Ends the current attempt of a directive's task: rolls back what the directive changed,
   * then retries (back to pending) or dead-letters it when its attempts are spent.
   */
  private endAttempt(jd: JournalDirective, outcome: string, reason: string, options: { exclude?: string | undefined; delayMs?: number }): void {
    const id = jd.directive!.directiveId;
    this.directives.delete(id);
    // Roll back what the directive changed: its reservations go back to the pool.
    this.release(id);
    const rt = this.tasks.get(jd.taskId);
    if (!rt || !rt.directives.has(id) || isTerminal(rt.task.state)) {
      void this.record({ deleteDirectives: [id] });
      return;
    }
    rt.directives.delete(id);
    // All or nothing: one member's end ends the coalition; the others are cancelled and released.
    this.dissolve(rt, `coalition member ${jd.agentId}: ${outcome}`);
    this.closeAttempt(rt.task, outcome, reason);
    this.performance?.recordDirective(jd.agentId, false);
    // Every failure is visible: this line, the task's status and history, an event and a metric.
    this.logger.info({ task_id: jd.taskId, directive_id: id, agent_id: jd.agentId, correlation_id: jd.directive!.correlationId, outcome, reason }, "task attempt ended");
    if (options.exclude) rt.excluded.add(options.exclude);
    const counted = this.countedFailures(rt.task);
    const deliveries = this.deliveries(rt.task);
    const spec = rt.task.spec!;
    const maxAttempts = spec.maxAttempts || this.config.tasks.maxAttempts;
    if (counted >= maxAttempts || deliveries >= this.config.tasks.maxDeliveries) {
      this.moveTask(rt, "dead_lettered");
      rt.task.reason = counted >= maxAttempts ? `${counted} attempts failed; last: ${outcome}: ${reason}` : `${deliveries} deliveries without success; last: ${outcome}: ${reason}`;
      rt.task.assignedAgents = [];
      this.logger.warn({ task_id: spec.taskId, outcome, reason: rt.task.reason }, "task dead-lettered");
    } else {
      this.moveTask(rt, "retry");
      rt.task.assignedAgents = [];
      rt.task.reason = `${outcome}: ${reason}`;
      const backoff = COUNTED.has(outcome) ? this.config.tasks.retryDelayMs * 2 ** Math.max(0, counted - 1) : 0;
      rt.notBefore = this.now() + Math.max(backoff, options.delayMs ?? 0);
    }
    rt.task.updatedAt = timestampNow();
    this.roundTaskEnded(jd.taskId, false, actionOf(jd.directive!), this.now() - timestampMsOf(jd.directive!));
    this.publishTask(rt.task, outcome);
    void this.record({ tasks: [rt.task], deleteDirectives: [id] });
    this.requestSchedule(outcome === "lease_expired" ? "progress_stalled" : outcome === "agent_unavailable" ? "agent_lost" : outcome);
  }

  private closeAttempt(task: Task, outcome: string, reason: string): void {
    const attempt = task.attempts.at(-1);
    if (attempt && !attempt.endedAt) {
      attempt.endedAt = timestampNow();
      attempt.outcome = outcome;
      attempt.reason = reason;
    }
  }

  /** The attempt a directive belongs to. */
  private attemptOf(task: Task, directiveId: string) {
    return task.attempts.find((a) => a.directiveIds.includes(directiveId));
  }

  private annotateAttempt(task: Task, directiveId: string, note: string): void {
    const attempt = this.attemptOf(task, directiveId);
    if (attempt) attempt.reason = attempt.reason ? `${attempt.reason}; ${note}` : note;
  }

  /** A closed attempt whose result came late and settled the task: its record says both. */
  private succeedLate(task: Task, directiveId: string, agentId: string): void {
    const attempt = this.attemptOf(task, directiveId);
    if (!attempt) return;
    attempt.reason = `completed by ${agentId} after the attempt was closed as ${attempt.outcome || "ended"}${attempt.reason ? ` (${attempt.reason})` : ""}`;
    attempt.outcome = "succeeded";
  }

  private countedFailures(task: Task): number {
    let n = 0;
    for (const a of task.attempts) {
      if (a.outcome === "resubmitted") n = 0;
      else if (COUNTED.has(a.outcome)) n++;
    }
    return n;
  }

  private deliveries(task: Task): number {
    let n = 0;
    for (const a of task.attempts) n = a.outcome === "resubmitted" ? 0 : n + 1;
    return n;
  }

  private async onCompletion(completion: TaskCompletion, owner: { taskId: string; agentId: string; coalition?: boolean } | undefined, agent: AgentRuntime): Promise<void> {
    const id = completion.directiveId;
    if (this.settled.has(completion.eventId)) return;
    const jd = this.directives.get(id);
    agent.outbox.settle(id);
    this.settleOutcome(agent, id);
    if (completion.status === CompletionStatus.SUCCEEDED) this.release(id);
    const rt = owner ? this.tasks.get(owner.taskId) : undefined;
    this.emit("directive.completed", completion, jd?.directive);
    if (!rt || isTerminal(rt.task.state)) {
      // Settled already (a duplicate, or the task finished elsewhere): acknowledge, change nothing.
      if (jd) this.directives.delete(id);
      this.remember(completion.eventId);
      return;
    }
    const current = rt.directives.has(id);
    if (completion.status === CompletionStatus.SUCCEEDED && current && rt.coalition) {
      // A coalition succeeds when every member has; the leader's result is the task's.
      rt.coalition.completed.set(id, completion);
      if (jd) this.directives.delete(id);
      await this.durably({ deleteDirectives: [id] }, `the completion of directive ${id}`);
      if (rt.coalition.completed.size < rt.directives.size) return;
      const leaderResult = [...rt.coalition.completed.values()].find((c) => c.sourceAgent === rt.coalition!.leader)?.result;
      if (leaderResult) completion.result = leaderResult;
    }
    // The late-result rule: a success from an attempt already closed (its agent was given up
    // on, its lease ran out) is the task's result only while no other attempt is running;
    // its attempt record then says it succeeded late. A superseded coalition member alone never settles it.
    const late = !current && completion.status === CompletionStatus.SUCCEEDED && !owner?.coalition;
    if (late && rt.task.state === TaskState.RUNNING) {
      this.annotateAttempt(rt.task, id, `its result arrived late, from ${agent.agentId}, while attempt ${rt.task.attempts.at(-1)?.attempt ?? "?"} was running, and was not used`);
      this.remember(completion.eventId);
      await this.durably({ tasks: [rt.task], deleteDirectives: [id] }, `the completion of directive ${id}`);
      return;
    }
    if (completion.status === CompletionStatus.SUCCEEDED && (current || late)) {
      if (jd) this.directives.delete(id);
      // Another attempt only assigned (not yet running) is called off: the late result wins.
      if (!current) for (const other of rt.directives) this.cancelDirective(other, "the task succeeded on another attempt");
      rt.directives.clear();
      if (rt.coalition) clearTimeout(rt.coalition.timer);
      rt.coalition = undefined;
      if (current) this.closeAttempt(rt.task, "succeeded", `completed by ${agent.agentId}`);
      else {
        this.closeAttempt(rt.task, "cancelled", `superseded: an earlier attempt's late result from ${agent.agentId} succeeded`);
        this.succeedLate(rt.task, id, agent.agentId);
      }
      this.roundTaskEnded(rt.task.spec!.taskId, true, jd?.directive ? actionOf(jd.directive) : "assign_task", jd?.directive ? this.now() - timestampMsOf(jd.directive) : 0);
      this.performance?.recordDirective(agent.agentId, true);
      this.moveTask(rt, "succeeded");
      if (completion.result) rt.task.result = completion.result;
      rt.task.reason = "";
      rt.task.updatedAt = timestampNow();
      const forget = [...this.directiveTask].filter(([, o]) => o.taskId === rt.task.spec!.taskId).map(([d]) => d);
      await this.durably({ tasks: [rt.task], deleteDirectives: forget }, `the completion of directive ${id}`);
      for (const d of forget) this.directiveTask.delete(d);
      this.remember(completion.eventId);
      this.publishTask(rt.task, "succeeded");
      this.requestSchedule();
      return;
    }
    this.remember(completion.eventId);
    if (!current || !jd) {
      await this.durably({ deleteDirectives: [id] }, `the completion of directive ${id}`);
      return;
    }
    const error = completion.error;
    if (completion.status === CompletionStatus.FAILED && error?.code === "resource_conflict") {
      this.endAttempt(jd, "resource_conflict", error.message, {});
    } else if (completion.status === CompletionStatus.FAILED && error && !error.retryable) {
      this.endAttempt(jd, "directive_failed", error.message, {});
      if (!isTerminal(rt.task.state)) this.deadLetter(rt, `directive_failed (not retryable): ${error.message}`);
    } else {
      this.endAttempt(jd, "directive_failed", error?.message || (completion.status === CompletionStatus.CANCELLED ? "the agent cancelled it" : "the agent reported failure"), {});
    }
  }

  private deadLetter(rt: TaskRuntime, reason: string): void {
    this.moveTask(rt, "dead_lettered");
    this.roundTaskEnded(rt.task.spec!.taskId, false, "assign_task", 0);
    rt.task.reason = reason;
    rt.task.updatedAt = timestampNow();
    this.publishTask(rt.task, "dead_lettered");
    void this.record({ tasks: [rt.task] });
  }

  private remember(eventId: string): void {
    this.settled.add(eventId);
    if (this.settled.size > SETTLED_MEMORY) this.settled.delete(this.settled.values().next().value!);
  }

  private cancelDirective(directiveId: string, reason: string): void {
    const jd = this.directives.get(directiveId);
    if (!jd) return;
    this.directives.delete(directiveId);
    this.release(directiveId);
    const agent = this.agentsById.get(jd.agentId);
    if (!agent) return;
    agent.outbox.settle(directiveId);
    this.settleOutcome(agent, directiveId);
    agent.session?.send({ $typeName: "baton.v1.CoordinatorMessage", kind: { case: "cancel", value: { $typeName: "baton.v1.DirectiveCancel", directiveId, taskId: jd.taskId, reason } } }, jd.directive!.correlationId);
    void this.record({ deleteDirectives: [directiveId] });
  }

  // ---------------------------------------------------------------- scheduling

  private requestSchedule(trigger = "system_state_change"): void {
    if (this.recovering) return;
    this.triggers.add(trigger);
    if (this.scheduleQueued || this.stopping) return;
    this.scheduleQueued = true;
    setImmediate(() => {
      this.scheduleQueued = false;
      void this.schedule();
    });
  }

  /**
   * One coordination round, the spec's success scenario: a state change starts it
   * (idle -> coordinating); it collects status from the agents concerned, verifies their
   * resources with the Resource Manager, generates a plan (-> executing), distributes the
   * directives (-> monitoring), and when its tasks end (-> idle) reports to the Performance
   * Monitor. Rounds run concurrently: each claims the agents and tasks it plans, and
   * another round plans at the same time with what is left (agents own their resources,
   * so disjoint agents mean disjoint resources).
   */
  private async schedule(): Promise<void> {
    const now = this.now();
    let wake = Number.POSITIVE_INFINITY;
    const fresh: TaskRuntime[] = [];
    for (const rt of this.pendingTasks) {
      if (this.claimedTasks.has(rt.task.spec!.taskId)) continue;
      if (rt.notBefore > now) wake = Math.min(wake, rt.notBefore);
      else if (!this.taskRound.has(rt.task.spec!.taskId)) fresh.push(rt);
    }
    clearTimeout(this.wakeTimer);
    if (Number.isFinite(wake)) {
      this.wakeTimer = setTimeout(() => this.requestSchedule("retry_due"), Math.max(1, wake - now));
      this.wakeTimer.unref();
    }
    const plans: Array<Promise<void>> = [];
    // Rounds that need adjusting re-plan their own tasks first.
    for (const rr of this.rounds.values()) {
      if (rr.round.state !== CoordinationState.COORDINATING || rr.planningNow || rr.replan.size === 0) continue;
      const due = [...rr.replan].map((id) => this.tasks.get(id)!).filter((rt) => rt && rt.task.state === TaskState.PENDING && rt.notBefore <= now && !this.claimedTasks.has(rt.task.spec!.taskId));
      if (due.length === 0) continue;
      const usable = this.eligibleAgents(due);
      const candidates = usable.filter((a) => !this.claimedAgents.has(a.agentId));
      // Nothing here could run its tasks: it waits for a state change rather than spin.
      if (usable.length === 0) continue;
      if (candidates.length === 0) {
        this.replanRequested = true;
        continue;
      }
      plans.push(this.planRound(rr, due, candidates, true));
    }
    // A round claims only agents that could run one of its tasks: concurrent rounds over other agents proceed.
    const usable = fresh.length > 0 ? this.eligibleAgents(fresh) : [];
    const candidates = usable.filter((a) => !this.claimedAgents.has(a.agentId));
    if (usable.length > 0 && candidates.length === 0) this.replanRequested = true;
    // What started this pass; a pass that starts no round forgets it.
    const trigger = [...this.triggers].join(",");
    this.triggers.clear();
    if (fresh.length > 0 && (candidates.length > 0 || usable.length === 0)) plans.push(this.planRound(this.startRound(trigger), fresh, candidates, false));
    await Promise.all(plans);
  }

  /** Steps 2 to 6 of a round over the tasks and agents it claims; a resumed round re-plans its own tasks. */
  private async planRound(rr: RoundRuntime, roundTasks: TaskRuntime[], candidates: AgentRuntime[], resumed: boolean): Promise<void> {
    const claimedAgents = candidates.map((a) => a.agentId);
    const claimedTasks = roundTasks.map((rt) => rt.task.spec!.taskId);
    for (const id of claimedAgents) this.claimedAgents.add(id);
    for (const id of claimedTasks) this.claimedTasks.add(id);
    rr.planningNow = true;
    // After a failed journal write the state is reloaded: this round's view of it is gone.
    const epoch = this.epoch;
    const abandoned = () => this.stopping || epoch !== this.epoch;
    const giveUp = (reason: string, wait: string) => {
      this.moveRound(rr, "coordination_failure", reason);
      if (resumed) {
        // The round keeps its tasks and tries again at the next state change.
        this.moveRound(rr, "retry_coordination", wait);
      } else {
        this.moveRound(rr, "recovery_complete", wait);
        this.finishRound(rr, false);
      }
    };
    try {
      // Agents that cannot run these tasks may still give them resources (adjust_resources):
      // they are asked for status and offered to the plan with no slots, but not claimed.
      const donors = this.candidateAgents().filter((a) => !this.claimedAgents.has(a.agentId) && a.hello.resources.length > 0);
      // Step 2: status from the agents concerned, each with a deadline; silence is agent_unavailable.
      const everyone = await this.collectStatus([...candidates, ...donors], rr.round.roundId);
      if (abandoned()) return;
      const answered = everyone.filter((a) => claimedAgents.includes(a.agentId));
      const roundId = rr.round.roundId;
      // The figures the plan weighs: utilization per agent from the Performance Monitor.
      const metricsRequest = create(MetricsRequestSchema, { requestId: randomUUID(), timestamp: timestampNow(), agentIds: answered.map((a) => a.agentId) });
      this.logParticipant(roundId, this.config.coordinatorId, PM, "metrics_request");
      const metrics = await this.performance?.metrics(metricsRequest).catch((err: unknown) => {
        this.logger.warn({ err: (err as Error).message }, "no figures from the Performance Monitor; planning without them");
        return undefined;
      });
      if (abandoned()) return;
      if (metrics) this.logParticipant(roundId, PM, this.config.coordinatorId, "system_metrics");
      // Step 3: verify resources with the Resource Manager.
      const query = create(ResourceQuerySchema, { requestId: randomUUID(), timestamp: timestampNow(), agentIds: everyone.map((a) => a.agentId) });
      this.logParticipant(roundId, this.config.coordinatorId, RM, "resource_query");
      const status = await this.inventory.query({ agentIds: query.agentIds });
      this.logParticipant(roundId, RM, this.config.coordinatorId, "resource_status");
      if (abandoned()) return;
      const agents = this.planAgents(answered, status);
      for (const d of everyone) {
        if (claimedAgents.includes(d.agentId)) continue;
        agents.push({ agentId: d.agentId, capabilities: new Set(d.hello.capabilities), labels: d.hello.labels, freeSlots: 0, load: d.outbox.list().length, resources: status.filter((r) => r.agentId === d.agentId).map((r) => ({ resourceId: r.resource!.resourceId, kind: r.resource!.kind, capacity: r.resource!.capacity, reserved: r.reserved })) });
      }
      // Utilization: fresh from the status responses, else the monitor's figures.
      const utilization = new Map((metrics?.agents ?? []).map((m) => [m.agentId, m.utilization]));
      for (const a of agents) {
        const u = this.reportedUtilization.get(a.agentId) ?? utilization.get(a.agentId);
        if (u !== undefined) a.utilization = u;
      }
      // The round's own tasks, less any cancelled while it collected status.
      const tasks = roundTasks.filter((rt) => rt.task.state === TaskState.PENDING).map((rt) => this.planTask(rt));
      if (agents.length === 0 || tasks.length === 0) return giveUp(candidates.length === 0 ? "no agent can run these tasks" : agents.length === 0 ? "no agent answered its status request" : "no pending task left to plan", "nothing to execute now");
      // Step 4: the plan.
      const plan = generatePlan({ tasks, agents });
      this.logger.debug({ round_id: rr.round.roundId, resumed, candidates: claimedAgents, answered: answered.map((a) => a.agentId), agents: agents.map((a) => `${a.agentId}:${a.load}/${a.freeSlots}`), tasks: tasks.map((t) => t.taskId), planned: plan.planned.map((p) => `${p.taskId}->${p.leader}`) }, "round plan");
      for (const move of plan.adjustments) await this.adjustResources(move, rr.round.roundId);
      if (abandoned()) return;
      if (plan.planned.length === 0) return giveUp(plan.unplaced[0]?.reason ?? "nothing could be placed", "tasks wait for capacity");
      this.moveRound(rr, "plan_ready", `${plan.planned.length} tasks placed, ${plan.unplaced.length} waiting`);
      // Step 5: distribute the directives.
      for (const planned of plan.planned) {
        const rt = this.tasks.get(planned.taskId)!;
        if (rt.task.state !== TaskState.PENDING) continue;
        const member = planned.members[0]!;
        const sent =
          planned.action === "form_coalition"
            ? await this.assignCoalition(rt, planned.members, planned.leader, rr.round.roundId)
            : await this.assign(rt, this.agentsById.get(member.agentId)!, member.resources, rr.round.roundId);
        if (abandoned()) return;
        if (!sent) continue;
        rr.replan.delete(planned.taskId);
        if (!rr.open.has(planned.taskId)) {
          rr.open.add(planned.taskId);
          rr.round.taskIds.push(planned.taskId);
        }
        for (const m of planned.members) if (!rr.round.agentIds.includes(m.agentId)) rr.round.agentIds.push(m.agentId);
        this.taskRound.set(planned.taskId, rr.round.roundId);
        rr.directives += planned.members.length;
      }
      // Step 6: monitoring, until every task of the round has ended.
      this.moveRound(rr, "execution_started", `${rr.directives} directives sent`);
      if (rr.replan.size > 0) this.moveRound(rr, "adjustment_needed", `${rr.replan.size} of its tasks still to place`);
      else if (rr.open.size === 0) {
        this.moveRound(rr, "completion", "nothing to monitor");
        this.finishRound(rr, true);
      }
    } catch (err) {
      this.logger.error({ err, round_id: rr.round.roundId }, "coordination round failed");
      if (rr.round.state === CoordinationState.COORDINATING) giveUp((err as Error).message, "the next state change tries again");
    } finally {
      rr.planningNow = false;
      for (const id of claimedAgents) this.claimedAgents.delete(id);
      for (const id of claimedTasks) this.claimedTasks.delete(id);
      if (this.replanRequested) {
        this.replanRequested = false;
        this.requestSchedule("replan");
      }
    }
  }

  /** Candidate agents that could run at least one of the tasks (capabilities, target, labels, exclusions). */
  private eligibleAgents(tasks: TaskRuntime[]): AgentRuntime[] {
    return this.candidateAgents().filter((a) =>
      tasks.some((rt) => {
        const spec = rt.task.spec!;
        if (rt.excluded.has(a.agentId) || (spec.target?.agentId && spec.target.agentId !== a.agentId)) return false;
        for (const [k, p] of Object.entries(spec.target?.labels ?? {})) if (!labelMatches(p, a.hello.labels[k])) return false;
        const caps = new Set(a.hello.capabilities);
        return spec.requiredCapabilities.every((c) => caps.has(c)) && (!isCoalition(spec) || spec.coalition!.roles.length === 0 || spec.coalition!.roles.some((r) => caps.has(r)));
      }),
    );
  }

  private candidateAgents(): AgentRuntime[] {
    return [...this.agentsById.values()].filter((a) => a.session && !a.draining && a.state !== AgentState.OFFLINE && a.breaker.allows && a.maxInFlight - a.outbox.list().length > 0);
  }

  /**
   * Step 2, status collection, from the synced view: agents whose status is at most a sync
   * interval old are taken as they are; only the others are asked, each with a deadline.
   */
  private async collectStatus(agents: AgentRuntime[], roundId: string): Promise<Array<AgentRuntime & { utilization?: number }>> {
    const timeoutMs = Math.min(this.config.session.statusTimeoutMs, this.config.session.ackTimeoutMs);
    const now = this.now();
    const answered: Array<AgentRuntime & { utilization?: number }> = [];
    const stale: AgentRuntime[] = [];
    for (const a of agents) (a.session && now - a.statusAt <= this.config.session.syncIntervalMs ? answered : stale).push(a);
    if (stale.length === 0) return answered;
    const results = await Promise.allSettled(stale.map((a) => (a.session ? a.session.requestStatus(timeoutMs, undefined, roundId) : Promise.reject(unavailable("no session")))));
    results.forEach((r, i) => {
      const agent = stale[i]!;
      if (r.status === "fulfilled") {
        this.reportedUtilization.set(agent.agentId, r.value.response.resourceUtilization);
        answered.push(agent);
      }
      else if ((r.reason as BatonError).code === Code.DEADLINE_EXCEEDED && agent.state !== AgentState.OFFLINE) this.markOffline(agent, `agent_unavailable: no answer to a status request within ${timeoutMs} ms`);
    });
    return answered;
  }

  private planAgents(answered: AgentRuntime[], status: Awaited<ReturnType<ResourceManagerPort["query"]>>): PlanAgent[] {
    const byAgent = new Map<string, PlanAgent["resources"]>();
    for (const r of status) {
      const list = byAgent.get(r.agentId) ?? [];
      list.push({ resourceId: r.resource!.resourceId, kind: r.resource!.kind, capacity: r.resource!.capacity, reserved: r.reserved });
      byAgent.set(r.agentId, list);
    }
    const out: PlanAgent[] = [];
    for (const a of answered) {
      if (!a.session || a.draining || a.state === AgentState.OFFLINE || !a.breaker.allows) continue;
      const held = a.outbox.list().length;
      // A half-open breaker takes exactly one probe.
      const free = a.breaker.state === "half_open" ? Math.min(1, a.maxInFlight - held) : a.maxInFlight - held;
      if (free > 0) out.push({ agentId: a.agentId, capabilities: new Set(a.hello.capabilities), labels: a.hello.labels, freeSlots: free, load: held, resources: byAgent.get(a.agentId) ?? [] });
    }
    return out;
  }

  private planTask(rt: TaskRuntime): PlanTask {
    const spec = rt.task.spec!;
    const created = rt.task.createdAt ? Number(rt.task.createdAt.seconds) * 1000 + rt.task.createdAt.nanos / 1e6 : 0;
    return {
      taskId: spec.taskId,
      priority: spec.priority,
      submitter: rt.task.submitter,
      order: created,
      requiredCapabilities: spec.requiredCapabilities,
      resources: spec.resources.map((r) => ({ ...(r.resourceId ? { resourceId: r.resourceId } : {}), ...(r.kind ? { kind: r.kind } : {}), amount: r.amount })),
      target: { agentId: spec.target?.agentId ?? "", labels: spec.target?.labels ?? {} },
      excluded: rt.excluded,
      ...(isCoalition(spec) ? { coalition: { roles: spec.coalition!.roles, size: Math.max(spec.coalition!.size, spec.coalition!.roles.length) } } : {}),
    };
  }

  private startRound(trigger: string): RoundRuntime {
    const round = create(CoordinationRoundSchema, { roundId: randomUUID(), state: CoordinationState.IDLE, trigger, startedAt: timestampNow(), updatedAt: timestampNow() });
    const rr: RoundRuntime = { round, startedAt: this.now(), open: new Set(), replan: new Set(), planningNow: false, succeeded: 0, failed: 0, directives: 0, completionMs: new Map() };
    this.rounds.set(round.roundId, rr);
    this.moveRound(rr, "system_state_change", trigger);
    return rr;
  }

  private moveRound(rr: RoundRuntime, trigger: RoundTrigger, reason: string): void {
    rr.round.state = nextState(rr.round.state, trigger);
    rr.round.updatedAt = timestampNow();
    this.logger.debug({ round_id: rr.round.roundId, state: CoordinationState[rr.round.state], trigger, reason }, "round");
    this.emit("round.updated", rr.round, reason);
  }

  /**
   * A round task's attempt ended. A failure that will be retried keeps the task in its
   * round (adjustment_needed: the round plans it again); otherwise the task leaves the
   * round, which completes when none is left.
   */
  private roundTaskEnded(taskId: string, ok: boolean, action: string, ms: number): void {
    const roundId = this.taskRound.get(taskId);
    if (!roundId) return;
    const rr = this.rounds.get(roundId);
    if (!rr) {
      this.taskRound.delete(taskId);
      return;
    }
    const list = rr.completionMs.get(action) ?? [];
    list.push(ms);
    rr.completionMs.set(action, list);
    if (!ok && this.tasks.get(taskId)?.task.state === TaskState.PENDING && rr.open.has(taskId)) {
      rr.replan.add(taskId);
      if (rr.round.state === CoordinationState.MONITORING) this.moveRound(rr, "adjustment_needed", `task ${taskId} is to be planned again`);
      this.requestSchedule("adjustment_needed");
      return;
    }
    this.taskRound.delete(taskId);
    rr.replan.delete(taskId);
    if (!rr.open.delete(taskId)) return;
    if (ok) rr.succeeded++;
    else rr.failed++;
    if (rr.open.size > 0 || rr.planningNow) return;
    if (rr.round.state === CoordinationState.MONITORING) {
      this.moveRound(rr, "completion", `${rr.succeeded} succeeded, ${rr.failed} failed`);
      this.finishRound(rr, rr.failed === 0);
    } else if (rr.round.state === CoordinationState.COORDINATING) {
      // Its last task ended while it waited to re-plan: nothing is left to coordinate.
      this.moveRound(rr, "coordination_failure", `${rr.failed} of its tasks failed`);
      this.moveRound(rr, "recovery_complete", "no task left");
      this.finishRound(rr, false);
    }
  }

  private finishRound(rr: RoundRuntime, succeeded: boolean): void {
    this.rounds.delete(rr.round.roundId);
    this.recentRounds.unshift(rr.round);
    if (this.recentRounds.length > 50) this.recentRounds.pop();
    // Step 7: the PerformanceReport.
    if (this.performance) this.logParticipant(rr.round.roundId, this.config.coordinatorId, PM, "performance_report");
    const directiveCompletionMs: Record<string, number> = {};
    for (const [action, list] of rr.completionMs) directiveCompletionMs[action] = list.reduce((a, b) => a + b, 0) / list.length;
    this.performance?.recordReport(
      create(PerformanceReportSchema, {
        reportId: randomUUID(),
        timestamp: timestampNow(),
        coordinatorId: this.config.coordinatorId,
        roundId: rr.round.roundId,
        succeeded,
        duration: durationFromMs(Math.max(0, Math.round(this.now() - rr.startedAt))),
        directives: rr.directives,
        tasksCompleted: rr.succeeded,
        tasksFailed: rr.failed,
        agents: rr.round.agentIds,
        directiveCompletionMs,
      }),
    );
  }

  /** This coordinator's id. */
  get id(): string {
    return this.config.coordinatorId;
  }

  private logParticipant(correlationId: string, source: string, destination: string, messageType: string): void {
    logProtocolMessage(this.logger, { correlation_id: correlationId, source, destination, message_type: messageType }, "sent", this.config.log.protocolLevel);
  }

  /** Rounds under way and the most recent finished ones. */
  coordination(): { rounds: CoordinationRound[]; recent: CoordinationRound[] } {
    return { rounds: [...this.rounds.values()].map((r) => r.round), recent: [...this.recentRounds] };
  }

  /**
   * adjust_resources: moves a free resource from an idle agent to an overloaded one. The
   * Resource Manager's inventory changes hands, and each agent gets a directive saying so.
   */
  private async adjustResources(move: ResourceMove, roundId: string): Promise<void> {
    const from = this.agentsById.get(move.from);
    const to = this.agentsById.get(move.to);
    const resource = from?.hello.resources.find((r) => r.resourceId === move.resourceId);
    if (!from?.session || !to?.session || !resource) return;
    try {
      from.hello.resources = from.hello.resources.filter((r) => r.resourceId !== move.resourceId);
      await this.inventory.register(from.agentId, from.hello.resources);
      to.hello.resources = [...to.hello.resources, resource];
      await this.inventory.register(to.agentId, to.hello.resources);
      const reason = `for task ${move.forTask}: ${move.from} is idle, ${move.to} is overloaded`;
      this.sendDirective(from.agentId, { action: Action.ADJUST_RESOURCES, correlationId: roundId, parameters: { kind: { case: "adjustResources", value: { revoke: [move.resourceId], reason } } } });
      this.sendDirective(to.agentId, { action: Action.ADJUST_RESOURCES, correlationId: roundId, parameters: { kind: { case: "adjustResources", value: { grant: [{ resourceId: move.resourceId, kind: move.kind, amount: move.amount }], reason } } } });
      this.logger.info({ ...move, round_id: roundId }, "adjust_resources");
      this.requestSchedule("resources_changed");
    } catch (err) {
      this.logger.warn({ ...move, err: (err as Error).message }, "adjust_resources failed");
    }
  }

  /** Reserves a directive's resources again (after a restart), by the ids it names and the amounts its task asked. */
  private async reserveFor(task: Task, directive: CoordinationDirective, agentId: string): Promise<void> {
    const params = directive.parameters?.kind.case === "assignTask" ? directive.parameters.kind.value : undefined;
    if (!params?.resources.length) return;
    try {
      await this.inventory.reserve({
        reservationId: directive.directiveId,
        holder: task.spec!.taskId,
        agentId,
        requests: params.resources.map((resourceId, i) => ({ $typeName: "baton.v1.ResourceRequest", resourceId, kind: "", amount: task.spec!.resources[i]?.amount ?? 0 })),
      });
    } catch (err) {
      this.logger.warn({ directive_id: directive.directiveId, err: (err as Error).message }, "could not restore a reservation");
    }
  }

  private async assign(rt: TaskRuntime, agent: AgentRuntime, resources: Array<{ resourceId: string; amount: number }>, correlationId: string): Promise<boolean> {
    const directive = directiveFor(rt.task, agent.agentId, correlationId, resources.map((r) => r.resourceId));
    const id = directive.directiveId;
    const epoch = this.epoch;
    try {
      if (resources.length) await this.inventory.reserve({ reservationId: id, holder: rt.task.spec!.taskId, agentId: agent.agentId, requests: resources.map((r) => ({ $typeName: "baton.v1.ResourceRequest", resourceId: r.resourceId, kind: "", amount: r.amount })) });
    } catch (err) {
      // resource_conflict: the plan saw a state that changed; replan shortly.
      rt.notBefore = this.now() + this.config.tasks.retryDelayMs;
      this.logger.info({ task_id: rt.task.spec!.taskId, outcome: "resource_conflict", reason: (err as Error).message }, "reservation refused; replanning");
      this.requestSchedule("resource_conflict");
      return false;
    }
    if (epoch !== this.epoch) {
      if (resources.length) this.release(id);
      return false;
    }
    const attemptNo = rt.task.attempts.length + 1;
    rt.task.attempts.push(create(TaskAttemptSchema, { attempt: attemptNo, agents: [agent.agentId], directiveIds: [id], startedAt: timestampNow() }));
    this.moveTask(rt, "assigned");
    rt.task.assignedAgents = [agent.agentId];
    rt.task.updatedAt = timestampNow();
    rt.directives = new Set([id]);
    rt.coalition = undefined;
    const jd = create(JournalDirectiveSchema, { directive, agentId: agent.agentId, sessionId: agent.sessionId, state: DeliveryState.QUEUED, taskId: rt.task.spec!.taskId, taskAttempt: attemptNo });
    this.directives.set(id, jd);
    this.directiveTask.set(id, { taskId: rt.task.spec!.taskId, agentId: agent.agentId });
    this.publishTask(rt.task, "assigned");
    // The outbox stamps the sequence; the journal gets the directive before any stream does.
    let added = false;
    agent.breaker
      .fire(() => {
        added = true;
        agent.outbox.add(directive, this.now());
        const outcome = this.track(agent, id);
        void this.record({ tasks: [rt.task], directives: [jd] }).then(
          () => epoch === this.epoch && this.pump(agent),
          () => {},
        );
        return outcome;
      })
      .catch((err: unknown) => {
        if (!added && this.directives.has(id)) {
          // The breaker refused it (open, or its one probe is out): plan it elsewhere at no cost.
          this.directives.delete(id);
          this.directiveTask.delete(id);
          this.release(id);
          rt.task.attempts.pop();
          rt.directives.clear();
          this.moveTask(rt, "retry");
          rt.task.assignedAgents = [];
          this.logger.debug({ task_id: rt.task.spec!.taskId, agent_id: agent.agentId, err: (err as Error).message }, "breaker refused a delivery");
          this.roundTaskEnded(rt.task.spec!.taskId, false, "assign_task", 0);
          this.requestSchedule("breaker_refused");
        }
      });
    return true;
  }

  /** Releases a directive's reservations; a failure is logged (the RM's breaker decides retries). */
  private release(reservationId: string): void {
    this.inventory.release(reservationId).then(
      // Freed capacity is a state change: a task that found no room may fit now (with a remote RM this lands after the round that needed it).
      (released) => released && this.requestSchedule("resources_released"),
      (err: unknown) => this.logger.warn({ reservation_id: reservationId, err: (err as Error).message }, "release failed"),
    );
  }

  /** Cancels and releases every directive of the task's current attempt. */
  private dissolve(rt: TaskRuntime, reason: string): void {
    for (const other of rt.directives) this.cancelDirective(other, reason);
    rt.directives.clear();
    if (rt.coalition) clearTimeout(rt.coalition.timer);
    rt.coalition = undefined;
  }

  /**
   * Sends form_coalition to every member: reserved all or nothing, formed only if every
   * member accepts within the formation timeout, else dissolved and retried.
   */
  private async assignCoalition(rt: TaskRuntime, members: Array<{ agentId: string; role: string; resources: Array<{ resourceId: string; amount: number }> }>, leader: string, correlationId: string): Promise<boolean> {
    const spec = rt.task.spec!;
    const coalitionId = randomUUID();
    const timeoutMs = spec.coalition?.formationTimeoutMs || this.config.tasks.coalitionFormationMs;
    const directives = members.map((m) =>
      create(CoordinationDirectiveSchema, {
        directiveId: randomUUID(),
        timestamp: timestampNow(),
        targetAgent: m.agentId,
        action: Action.FORM_COALITION,
        correlationId,
        parameters: {
          kind: {
            case: "formCoalition",
            value: { coalitionId, taskId: spec.taskId, members: members.map((x) => x.agentId), leader, role: m.role, formationTimeout: durationFromMs(timeoutMs), resources: m.resources.map((r) => r.resourceId), priority: spec.priority, ...(spec.input ? { input: spec.input } : {}) },
          },
        },
      }),
    );
    const reserved: string[] = [];
    const epoch = this.epoch;
    try {
      for (const [i, d] of directives.entries()) {
        if (!members[i]!.resources.length) continue;
        await this.inventory.reserve({ reservationId: d.directiveId, holder: spec.taskId, agentId: members[i]!.agentId, requests: members[i]!.resources.map((r) => ({ $typeName: "baton.v1.ResourceRequest" as const, resourceId: r.resourceId, kind: "", amount: r.amount })) });
        reserved.push(d.directiveId);
      }
    } catch (err) {
      for (const id of reserved) this.release(id);
      rt.notBefore = this.now() + this.config.tasks.retryDelayMs;
      this.logger.info({ task_id: spec.taskId, outcome: "resource_conflict", reason: (err as Error).message }, "coalition reservation refused; replanning");
      this.requestSchedule("resource_conflict");
      return false;
    }
    if (epoch !== this.epoch) {
      for (const id of reserved) this.release(id);
      return false;
    }
    const attemptNo = rt.task.attempts.length + 1;
    rt.task.attempts.push(create(TaskAttemptSchema, { attempt: attemptNo, agents: members.map((m) => m.agentId), directiveIds: directives.map((d) => d.directiveId), startedAt: timestampNow() }));
    this.moveTask(rt, "assigned");
    rt.task.assignedAgents = members.map((m) => m.agentId);
    rt.task.updatedAt = timestampNow();
    rt.directives = new Set(directives.map((d) => d.directiveId));
    const coalition: CoalitionRuntime = { coalitionId, leader, accepted: new Set(), completed: new Map(), timer: undefined };
    rt.coalition = coalition;
    coalition.timer = setTimeout(() => {
      if (rt.coalition !== coalition || coalition.accepted.size === rt.directives.size) return;
      const missing = [...rt.directives].find((id) => !coalition.accepted.has(id));
      const jd = missing ? this.directives.get(missing) : undefined;
      if (jd) this.endAttempt(jd, "coalition_not_formed", `not every member accepted within ${timeoutMs} ms`, {});
    }, timeoutMs);
    coalition.timer.unref();
    const records = directives.map((d, i) => create(JournalDirectiveSchema, { directive: d, agentId: members[i]!.agentId, sessionId: this.agentsById.get(members[i]!.agentId)!.sessionId, state: DeliveryState.QUEUED, taskId: spec.taskId, taskAttempt: attemptNo }));
    for (const jd of records) {
      this.directives.set(jd.directive!.directiveId, jd);
      this.directiveTask.set(jd.directive!.directiveId, { taskId: spec.taskId, agentId: jd.agentId, coalition: true });
    }
    this.publishTask(rt.task, "assigned");
    void this.record({ tasks: [rt.task], directives: records }).then(
      () => {
        if (epoch !== this.epoch) return;
        for (const jd of records) {
          const agent = this.agentsById.get(jd.agentId)!;
          const d = jd.directive!;
          agent.breaker
            .fire(() => {
              agent.outbox.add(d, this.now());
              const outcome = this.track(agent, d.directiveId);
              this.pump(agent);
              return outcome;
            })
            .catch(() => {
              // A member's breaker refused: the coalition cannot form; dissolve and plan again.
              if (rt.coalition === coalition && this.directives.has(d.directiveId)) this.endAttempt(jd, "agent_unavailable", `member ${jd.agentId} refused by its breaker`, {});
            });
        }
      },
      () => {},
    );
    return true;
  }

  // ---------------------------------------------------------------- tasks (Control)

  private taskRuntime(task: Task): TaskRuntime {
    const excluded = new Set<string>();
    for (const a of task.attempts) if (a.outcome === "rejected") for (const agent of a.agents) excluded.add(agent);
    return { task, excluded, notBefore: 0, directives: new Set(), coalition: undefined, seq: 0, bytes: toBinary(TaskSpecSchema, task.spec!).byteLength };
  }

  /** Accepts a task; resolves once it is durable. The same task_id submits once. */
  async submitTask(spec: TaskSpec, submitter: string): Promise<{ task: Task; created: boolean }> {
    this.assertServing();
    assertProtocolValid(TaskSpecSchema, spec);
    // The spec travels whole in SubmitTask's and GetTask's answers, ListTasks pages, task events and the directive: it must fit them all.
    assertTaskSpecFits(spec, this.config.limits);
    if (!isValidAgentId(spec.taskId)) throw invalidArgument(`TaskSpec: task_id ${quote(spec.taskId)} must be 1 to 128 of A-Z a-z 0-9 . _ -`);
    if (spec.coalition) {
      const size = Math.max(spec.coalition.size, spec.coalition.roles.length);
      if (size > 64) throw invalidArgument(`TaskSpec: coalition.size ${size} is over the limit of 64 members`);
      spec.coalition.roles.forEach((role, i) => {
        if (!role.trim()) throw invalidArgument(`TaskSpec: coalition.roles[${i}] is empty`);
      });
    }
    if (spec.target?.agentId && !isValidAgentId(spec.target.agentId)) throw invalidArgument("TaskSpec: target.agent_id is not a valid agent id");
    if (spec.sensitiveInput && !this.journal.holdsSecrets) {
      throw failedPrecondition(`TaskSpec: sensitive_input is sealed at rest in the journal, and no journal key is configured: set store.keyFile (${this.config.store.keyFile} does not exist) or BATON_JOURNAL_KEY; ${journalKeyHint(this.config.store.keyFile)}`);
    }
    if (spec.sensitiveInput && this.config.security.messageSecurity === "off") {
      throw failedPrecondition("TaskSpec: sensitive_input needs message security (security.messageSecurity \"required\") to be sealed for the agent");
    }
    const existing = this.tasks.get(spec.taskId);
    if (existing) {
      if (!equals(TaskSpecSchema, existing.task.spec!, spec)) throw new BatonError(Code.ALREADY_EXISTS, `task ${spec.taskId} was already submitted with a different spec`);
      // Not "created: false" before the first submit is durable: that write may yet fail.
      await existing.created;
      return { task: existing.task, created: false };
    }
    const bytes = toBinary(TaskSpecSchema, spec).byteLength;
    this.assertRoomFor(bytes);
    const task = create(TaskSchema, { spec, state: TaskState.PENDING, submitter, createdAt: timestampNow(), updatedAt: timestampNow() });
    const rt: TaskRuntime = { task, excluded: new Set(), notBefore: 0, directives: new Set(), coalition: undefined, seq: 0, bytes };
    // In memory first, so a concurrent duplicate finds it and waits; acknowledged only once durable.
    rt.created = this.durably({ tasks: [task] }, `task ${spec.taskId}`);
    this.addTask(rt);
    try {
      await rt.created;
    } catch (err) {
      // The failed write has dropped the whole unacknowledged state (onJournalFailed), this task with it.
      throw err;
    } finally {
      delete rt.created;
    }
    this.publishTask(task, "submitted");
    this.requestSchedule("task_submitted");
    return { task, created: true };
  }

  /**
   * Accepts many tasks at once, each on its own terms (as submitTask: idempotent by id, its
   * own refusal), with one durable write for all: each submit's commit joins the same group
   * commit, since none waits before it has committed.
   */
  async submitTasks(specs: TaskSpec[], submitter: string): Promise<Array<{ taskId: string; code: Code; message: string; created: boolean }>> {
    this.assertServing();
    if (specs.length === 0) throw invalidArgument("SubmitTasksRequest: tasks is empty");
    const max = this.config.tasks.maxBulk;
    if (specs.length > max) throw invalidArgument(`SubmitTasksRequest: ${specs.length} tasks is over the limit of ${max} a call (tasks.maxBulk)`);
    const outcomes = await Promise.allSettled(specs.map((spec) => this.submitTask(spec, submitter)));
    return outcomes.map((o, i) => {
      const taskId = specs[i]!.taskId;
      if (o.status === "fulfilled") return { taskId, code: Code.OK, message: "", created: o.value.created };
      const err = BatonError.from(o.reason);
      if (err.code === Code.INTERNAL) this.logger.error({ err: o.reason, task_id: taskId }, "bulk submit of a task failed");
      return { taskId, code: err.code, message: err.code === Code.INTERNAL ? "internal error" : err.message, created: false };
    });
  }

  /** How many tasks are in each state. */
  taskCounts(): Map<TaskState, number> {
    return new Map(this.stateCounts);
  }

  /** Refuses new open work beyond tasks.maxOpen and tasks.maxOpenBytes: pending work is bounded, not held until the heap runs out. */
  private assertRoomFor(bytes: number): void {
    const { maxOpen, maxOpenBytes } = this.config.tasks;
    if (this.open.tasks >= maxOpen) throw new BatonError(Code.RESOURCE_EXHAUSTED, `the coordinator holds ${this.open.tasks} open tasks, its limit (tasks.maxOpen, BATON_MAX_OPEN_TASKS); submit again once some have finished`);
    if (this.open.bytes + bytes > maxOpenBytes) {
      throw new BatonError(Code.RESOURCE_EXHAUSTED, `open tasks hold ${this.open.bytes} bytes of specs; this one (${bytes} bytes) would pass the limit of ${maxOpenBytes} (tasks.maxOpenBytes, BATON_MAX_OPEN_TASK_BYTES); submit again once some have finished`);
    }
  }

  private addTask(rt: TaskRuntime): void {
    rt.seq = this.order.length;
    this.order.push(rt);
    this.tasks.set(rt.task.spec!.taskId, rt);
    this.countState(rt, rt.task.state, 1);
  }

  /** The one way a task's state changes: by the task state table, keeping the indexes and the bounds. */
  private moveTask(rt: TaskRuntime, event: TaskEvent): void {
    const next = nextTaskState(rt.task.state, event);
    this.countState(rt, rt.task.state, -1);
    rt.task.state = next;
    this.countState(rt, next, 1);
  }

  private countState(rt: TaskRuntime, state: TaskState, delta: 1 | -1): void {
    this.stateCounts.set(state, (this.stateCounts.get(state) ?? 0) + delta);
    if (isOpen(state)) {
      this.open.tasks += delta;
      this.open.bytes += delta * rt.bytes;
    }
    if (state === TaskState.PENDING) {
      if (delta > 0) this.pendingTasks.add(rt);
      else this.pendingTasks.delete(rt);
    }
  }

  private clearTaskIndex(): void {
    this.order.length = 0;
    this.pendingTasks.clear();
    this.stateCounts.clear();
    this.open = { tasks: 0, bytes: 0 };
  }

  /** One task. */
  getTask(taskId: string): Task {
    this.assertServing();
    const rt = this.tasks.get(taskId);
    if (!rt) throw notFound(`no task ${JSON.stringify(taskId)}`);
    return rt.task;
  }

  /**
   * Tasks in creation order, filtered by state, paged by task id: a page continues after the
   * named task's place in creation order, whatever its state is now, so paging never breaks
   * when a task changes state between pages.
   */
  listTasks(states: TaskState[], pageSize: number, after: string): { tasks: Task[]; next: string } {
    this.assertServing();
    const wanted = new Set(states);
    let start = 0;
    if (after) {
      const from = this.tasks.get(after);
      if (!from) throw invalidArgument("page_token does not name a task of this listing");
      start = from.seq + 1;
    }
    const tasks: Task[] = [];
    for (let i = start; i < this.order.length; i++) {
      const task = this.order[i]!.task;
      if (wanted.size > 0 && !wanted.has(task.state)) continue;
      // One more than the page: then there is a next page.
      if (tasks.length === pageSize) return { tasks, next: tasks.at(-1)!.spec!.taskId };
      tasks.push(task);
    }
    return { tasks, next: "" };
  }

  /** Cancels a task; its agent is told and its handler's signal aborts. */
  async cancelTask(taskId: string, reason: string): Promise<Task> {
    this.assertServing();
    const rt = this.tasks.get(taskId);
    if (!rt) throw notFound(`no task ${JSON.stringify(taskId)}`);
    if (rt.task.state === TaskState.CANCELLED) {
      await this.durable();
      return rt.task;
    }
    if (isTerminal(rt.task.state)) throw failedPrecondition(`task ${taskId} has already ended (${TaskState[rt.task.state]})`);
    this.closeAttempt(rt.task, "cancelled", reason);
    this.moveTask(rt, "cancelled");
    rt.task.reason = reason || "cancelled";
    rt.task.assignedAgents = [];
    rt.task.updatedAt = timestampNow();
    this.roundTaskEnded(taskId, false, "cancelled", 0);
    this.publishTask(rt.task, "cancelled");
    await this.durably({ tasks: [rt.task] }, `the cancellation of task ${taskId}`);
    // Agents are told only once the cancellation is durable.
    this.dissolve(rt, reason || "cancelled");
    return rt.task;
  }

  /** Puts a dead-lettered task back to pending, its attempt count reset, its history kept. */
  async resubmitTask(taskId: string): Promise<Task> {
    this.assertServing();
    const rt = this.tasks.get(taskId);
    if (!rt) throw notFound(`no task ${JSON.stringify(taskId)}`);
    if (rt.task.state !== TaskState.DEAD_LETTERED) throw failedPrecondition(`only a dead-lettered task can be resubmitted; ${taskId} is ${TaskState[rt.task.state]}`);
    rt.task.attempts.push(create(TaskAttemptSchema, { attempt: rt.task.attempts.length + 1, outcome: "resubmitted", startedAt: timestampNow(), endedAt: timestampNow() }));
    this.assertRoomFor(rt.bytes);
    this.moveTask(rt, "resubmitted");
    rt.task.reason = "resubmitted";
    rt.excluded.clear();
    rt.notBefore = 0;
    rt.task.updatedAt = timestampNow();
    this.publishTask(rt.task, "resubmitted");
    await this.durably({ tasks: [rt.task] }, `the resubmission of task ${taskId}`);
    this.requestSchedule();
    return rt.task;
  }

  // ---------------------------------------------------------------- operators

  private liveSession(agentId: string): AgentSession {
    const agent = this.agentsById.get(agentId);
    if (!agent) throw notFound(`no agent ${JSON.stringify(agentId)} is known`);
    if (!agent.session) throw unavailable(`agent ${agentId} has no open session`);
    return agent.session;
  }

  /** Asks an agent for its status over its stream and waits for the answer. */
  async requestStatus(agentId: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ response: AgentStatusResponse; roundTripMs: number }> {
    return this.liveSession(agentId).requestStatus(options.timeoutMs ?? this.config.session.statusTimeoutMs, options.signal);
  }

  /** Sends a directive outside any task (operators, tests); it is tracked like any other. */
  sendDirective(agentId: string, init: MessageInitShape<typeof CoordinationDirectiveSchema>): CoordinationDirective {
    const agent = this.agentsById.get(agentId);
    this.liveSession(agentId);
    if (agent!.draining) throw failedPrecondition(`agent ${agentId} is draining and takes no new work`);
    const held = agent!.outbox.list().length;
    if (held >= agent!.maxInFlight) throw new BatonError(Code.RESOURCE_EXHAUSTED, `agent ${agentId} holds ${held} directives, its in-flight cap`);
    const directive = create(CoordinationDirectiveSchema, { directiveId: randomUUID(), timestamp: timestampNow(), ...init, targetAgent: agentId });
    directive.correlationId ||= directive.directiveId;
    assertProtocolValid(CoordinationDirectiveSchema, directive);
    agent!.outbox.add(directive, this.now());
    this.directiveTask.set(directive.directiveId, { taskId: "", agentId });
    this.directives.set(directive.directiveId, create(JournalDirectiveSchema, { directive, agentId, sessionId: agent!.sessionId, state: DeliveryState.QUEUED, taskId: "" }));
    this.pump(agent!);
    return directive;
  }

  /** Tells an agent to take no new work and to reconnect elsewhere when done. */
  drain(agentId: string, reason: string, reconnectTo = ""): AgentRuntime {
    const session = this.liveSession(agentId);
    const agent = this.agentsById.get(agentId)!;
    agent.draining = true;
    agent.state = AgentState.DRAINING;
    session.sendFrame(create(ConnectResponseSchema, { kind: { case: "drain", value: { reason, reconnectTo } } }));
    this.emit("agent.draining", agent);
    return agent;
  }

  /** Directives held for an agent (or all), not yet completed. */
  pendingDirectives(agentId?: string): CoordinationDirective[] {
    return [...this.agentsById.values()].filter((a) => !agentId || a.agentId === agentId).flatMap((a) => a.outbox.list().map((e) => e.directive));
  }

  /** Closes every session (agents are told to reconnect), stops timers, closes the journal. */
  async shutdown(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.wakeTimer);
    for (const agent of this.agentsById.values()) {
      clearTimeout(agent.graceTimer);
      clearTimeout(agent.dueTimer);
      agent.breaker.shutdown();
      const session = agent.session;
      if (session) {
        session.sendFrame(create(ConnectResponseSchema, { kind: { case: "drain", value: { reason: "coordinator shutting down" } } }));
        session.close(unavailable("the coordinator is shutting down"));
      }
    }
    await this.journal.close();
  }
}

