import { randomBytes } from "node:crypto";
import type { EventEmitter } from "node:events";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { CoordinationRound, Task, TaskState } from "../../gen/baton/v1/control_pb.js";
import type { JournalDirective } from "../../gen/baton/v1/journal_pb.js";
import type { BatonConfig } from "../config.js";
import { unavailable } from "../errors.js";
import { logProtocolMessage, type Logger } from "../logging.js";
import type { Store as JournalStore } from "../store/index.js";
import type { PerformanceSink, ResourceManagerPort } from "./ports.js";
import type { AgentRuntime, CoordinatorEvents, DirectiveOwner, RoundRuntime, TaskRuntime } from "./runtime.js";
import { PendingIndex } from "./pending-index.js";
import { TaskJournal, type CommitOptions } from "./task-journal.js";
import { timestampAt } from "../rpc/index.js";

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

/**
 * Everything the coordinator's parts share, in one object the facade hands to each: what
 * it was given (config, clock, journal, RM, PM, its event emitter) and what it holds in
 * memory. A failed journal write drops all of it at once (see journal-recovery.ts).
 */
export interface CoordinatorState {
  readonly config: BatonConfig;
  readonly logger: Logger;
  readonly store: JournalStore;
  /** The one clock: milliseconds since the epoch. */
  readonly now: () => number;
  /** The Resource Manager: what agents offer and what is reserved on it. */
  readonly inventory: ResourceManagerPort;
  readonly performance: PerformanceSink | undefined;
  readonly events: EventEmitter<CoordinatorEvents>;
  journal: TaskJournal;
  /** Whether a failed journal write has the coordinator waiting to reload its state. */
  recovering: boolean;
  /** Bumped when the in-memory state is dropped: work begun before then must not touch the reloaded state. */
  epoch: number;
  stopping: boolean;
  /** Draining before a stop (SIGTERM): no round places new work; what is in flight carries on. */
  draining: boolean;
  readonly agentsById: Map<string, AgentRuntime>;
  /** The same agents in the order they first came, with where the last candidate search stopped (candidate-search.ts). */
  readonly agentRing: { agents: AgentRuntime[]; cursor: number };
  /** Agents whose Hello offers resources: the donors a round may move resources from. */
  readonly resourceHolders: Set<AgentRuntime>;
  readonly tasks: Map<string, TaskRuntime>;
  /**
   * Every task held in creation order (ListTasks), the pending ones (scheduling), counts by
   * state: kept by the task engine's moveTask. A forgotten task stays in `order` as a hole
   * until the holes are half of it.
   */
  readonly order: TaskRuntime[];
  /** Creation order's numbering (TaskRuntime.seq) and its holes; `tag` names the numbering, new at each load, in page tokens. */
  listing: { tag: string; nextSeq: number; holes: number };
  readonly pendingTasks: Set<TaskRuntime>;
  /** The same tasks in the planner's order, read lazily by a pass under a backlog (pending-index.ts). */
  readonly pendingOrder: PendingIndex;
  /** Pending tasks given a not-before time (retry, NAK, conflict delays), until it passes: the pass's wake-up. */
  readonly delayedTasks: Set<TaskRuntime>;
  /** How many times the usual intake a pass takes: grows while passes leave agents free with tasks unread, back to 1 once one fills them. */
  intakeBoost: number;
  readonly stateCounts: Map<TaskState, number>;
  open: { tasks: number; bytes: number };
  /** Live (unsettled) directives. */
  readonly directives: Map<string, JournalDirective>;
  /** Every directive of a task still open, superseded ones included: a late success still counts. */
  readonly directiveTask: Map<string, DirectiveOwner>;
  /** Completions settled already (by event id): a resent one is acknowledged, not applied twice. */
  readonly settled: Set<string>;
  scheduleQueued: boolean;
  wakeTimer: NodeJS.Timeout | undefined;
  readonly rounds: Map<string, RoundRuntime>;
  /** Rounds that have had tasks to plan again (a superset: emptied ones are dropped by the next pass). */
  readonly replanRounds: Set<RoundRuntime>;
  readonly taskRound: Map<string, string>;
  readonly recentRounds: CoordinationRound[];
  /** Agents and tasks claimed by rounds that are planning now: concurrent rounds never share them. */
  readonly claimedAgents: Set<string>;
  readonly claimedTasks: Set<string>;
  /** Utilization each agent reported in its latest status response. */
  readonly reportedUtilization: Map<string, number>;
  replanRequested: boolean;
  readonly triggers: Set<string>;
}

// The embedded participants, as logs name them.
/** The Performance Monitor, as protocol log lines name it. */
export const PM = "performance-monitor";
/** The Resource Manager, as protocol log lines name it. */
export const RM = "resource-manager";

/** The coordinator's shared state, empty; `onJournalFailed` hears of any journal write that failed. */
export function createCoordinatorState(options: CoordinatorOptions, events: EventEmitter<CoordinatorEvents>, onJournalFailed: (err: unknown) => void): CoordinatorState {
  return {
    config: options.config,
    logger: options.logger.child({ component: "coordinator" }),
    store: options.store,
    now: options.now ?? Date.now,
    inventory: options.resources,
    performance: options.performance,
    events,
    journal: new TaskJournal(options.store, onJournalFailed),
    recovering: false,
    epoch: 0,
    stopping: false,
    draining: false,
    agentsById: new Map(),
    agentRing: { agents: [], cursor: 0 },
    resourceHolders: new Set(),
    tasks: new Map(),
    order: [],
    listing: newListing(),
    pendingTasks: new Set(),
    pendingOrder: new PendingIndex(),
    delayedTasks: new Set(),
    intakeBoost: 1,
    stateCounts: new Map(),
    open: { tasks: 0, bytes: 0 },
    directives: new Map(),
    directiveTask: new Map(),
    settled: new Set(),
    scheduleQueued: false,
    wakeTimer: undefined,
    rounds: new Map(),
    replanRounds: new Set(),
    taskRound: new Map(),
    recentRounds: [],
    claimedAgents: new Set(),
    claimedTasks: new Set(),
    reportedUtilization: new Map(),
    replanRequested: false,
    triggers: new Set(),
  };
}

/** A fresh numbering of creation order: page tokens of an earlier one are told apart by its tag. */
export function newListing(): CoordinatorState["listing"] {
  return { tag: randomBytes(4).toString("hex"), nextSeq: 0, holes: 0 };
}

/** Holds a task back until `until` (ms on the coordinator's clock): no pass plans it before. */
export function delayTask(state: CoordinatorState, rt: TaskRuntime, until: number): void {
  rt.notBefore = until;
  if (until > state.now()) state.delayedTasks.add(rt);
}

/** Now, on the coordinator's clock, as a protobuf Timestamp. */
export function stamp(state: CoordinatorState): Timestamp {
  return timestampAt(state.now());
}

/** Refuses calls while the state is being reloaded after a failed journal write. */
export function assertServing(state: CoordinatorState): void {
  if (state.stopping) throw unavailable("the coordinator is shutting down");
  if (state.recovering) throw unavailable("the coordinator's journal cannot be written right now (is the disk full?); it takes work again once it can");
}

/** Resolves once every change made so far is durable: answers wait for it, so none shows a state the journal may not keep. */
export async function durable(state: CoordinatorState): Promise<void> {
  assertServing(state);
  await state.journal.barrier().catch(() => {
    throw unavailable("the coordinator's journal cannot be written right now (is the disk full?)");
  });
}

/** Commits a change whose caller waits on it; a failed write is UNAVAILABLE for the caller. */
export async function durably(state: CoordinatorState, change: Parameters<TaskJournal["commit"]>[0], what: string): Promise<void> {
  await asCallerSees(state.journal.commit(change), what);
}

/** A commit as its caller sees it: a failed write is UNAVAILABLE, saying what was not made durable. */
export function asCallerSees(written: Promise<void>, what: string): Promise<void> {
  return written.catch(() => {
    throw unavailable(`${what} could not be made durable (the journal cannot be written); try again`);
  });
}

/** Commits a change no caller waits on; a failure is handled once, by onJournalFailed. */
export function record(state: CoordinatorState, change: Parameters<TaskJournal["commit"]>[0], options?: CommitOptions): Promise<void> {
  const written = state.journal.commit(change, options);
  written.catch(() => {});
  return written;
}

/**
 * Publishes a task's change once it is durable, as it was when it changed. Without
 * `written` (the commit of that change) it waits for a barrier, which also carries a
 * commit made later in the same tick; callers publish first and commit next.
 */
export function publishTask(state: CoordinatorState, task: Task, reason: string, written?: Promise<void>): void {
  const snapshot: Task = { ...task, attempts: task.attempts.map((a) => ({ ...a })), assignedAgents: [...task.assignedAgents] };
  const epoch = state.epoch;
  (written ?? state.journal.barrier()).then(
    () => epoch === state.epoch && state.events.emit("task.updated", snapshot, reason),
    () => {},
  );
}

/** Logs a protocol message between the coordinator and an embedded participant (RM, PM). */
export function logParticipant(state: CoordinatorState, correlationId: string, source: string, destination: string, messageType: string): void {
  logProtocolMessage(state.logger, { correlation_id: correlationId, source, destination, message_type: messageType }, "sent", state.config.log.protocolLevel);
}
