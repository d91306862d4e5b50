import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Task, TaskSpec } from "../../gen/baton/v1/control_pb.js";
import type { AgentStatusResponse, CoordinationDirective, CoordinationDirectiveSchema, TaskCompletion } from "../../gen/baton/v1/coordination_pb.js";
import type { JournalDirective } from "../../gen/baton/v1/journal_pb.js";
import type { AgentReport } from "../../gen/baton/v1/session_pb.js";
import type { BatonError } from "../errors.js";
import type { Logger } from "../logging.js";
import type { ResourceMove } from "../planner/index.js";
import type { ClockSkewError } from "../security/index.js";
import type { AgentSession } from "./agent-session.js";
import type { DirectiveOutbox } from "./directive-outbox.js";
import type { RoundTrigger } from "./round-state.js";
import type { AgentRuntime, DirectiveOwner, RoundRuntime, TaskRuntime } from "./runtime.js";
import type { TaskEvent } from "./task-state.js";

// What each part of the coordinator offers the others. The facade makes every part with
// the shared state and this one object, then fills it in: parts call one another through
// it and never import one another, so there is no import cycle however they call.

/** The agents known: runtimes, breakers, grace timers and the synced view. */
export interface AgentRegistry {
  agentRuntime(agentId: string, sessionId?: string): AgentRuntime;
  newOutbox(maxInFlight: number, firstSequence?: bigint, from?: DirectiveOutbox): DirectiveOutbox;
  markOffline(agent: AgentRuntime, reason: string, options?: { openBreaker?: boolean }): void;
  startGrace(agent: AgentRuntime, reason: string, clean?: boolean): void;
  onSessionClosed(agent: AgentRuntime, session: AgentSession, error: BatonError | undefined): void;
  onClockSkewRefused(agent: AgentRuntime, refusal: ClockSkewError): void;
  liveSession(agentId: string): AgentSession;
  /** The agents known, sorted by id. */
  agents(): AgentRuntime[];
  agent(agentId: string): AgentRuntime | undefined;
  drain(agentId: string, reason: string, reconnectTo?: string): AgentRuntime;
  undrain(agentId: string): AgentRuntime;
  requestStatus(agentId: string, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<{ response: AgentStatusResponse; roundTripMs: number }>;
}

/** Directive delivery: outboxes, acks, leases and the breaker outcome of each delivery. */
export interface DirectiveDelivery {
  track(agent: AgentRuntime, directiveId: string): Promise<void>;
  settleOutcome(agent: AgentRuntime, directiveId: string, failure?: Error): void;
  pump(agent: AgentRuntime): void;
  handBack(agent: AgentRuntime, entries: Array<{ directive: CoordinationDirective; accepted: boolean }>, outcome: string): void;
  cancelDirective(directiveId: string, reason: string): void;
  sendDirective(agentId: string, init: MessageInitShape<typeof CoordinationDirectiveSchema>): CoordinationDirective;
  /** Directives held for an agent (or all), not yet completed. */
  pendingDirectives(agentId?: string): CoordinationDirective[];
}

/** The task engine: the only code that writes a Task. */
export interface TaskEngine {
  taskRuntime(task: Task): TaskRuntime;
  newTask(spec: TaskSpec, submitter: string, bytes: number): TaskRuntime;
  /** Refuses open work beyond tasks.maxOpen and tasks.maxOpenBytes (RESOURCE_EXHAUSTED). */
  assertRoomFor(bytes: number): void;
  addTask(rt: TaskRuntime): void;
  moveTask(rt: TaskRuntime, event: TaskEvent): void;
  /** Drops an ended task from every index (task retention decides when). */
  forget(rt: TaskRuntime): void;
  clearTaskIndex(): void;
  startAttempt(rt: TaskRuntime, agents: string[], directiveIds: string[]): number;
  undoAttempt(rt: TaskRuntime): void;
  cancel(rt: TaskRuntime, reason: string): void;
  resubmit(rt: TaskRuntime): void;
  onAccepted(jd: JournalDirective): void;
  endAttempt(jd: JournalDirective, outcome: string, reason: string, options: { exclude?: string | undefined; delayMs?: number }): void;
  onCompletion(completion: TaskCompletion, owner: DirectiveOwner | undefined, agent: AgentRuntime): Promise<void>;
}

/** Ended tasks kept up to tasks.keepEnded and tasks.keepEndedMs, then forgotten, in memory and in the journal. */
export interface TaskRetention {
  /** A task has ended (`at`: when, ms; now unless restored from the journal). */
  ended(rt: TaskRuntime, at?: number): void;
  /** An ended task is open again (resubmitted): it is kept while open. */
  reopened(rt: TaskRuntime): void;
  clear(): void;
  /** Ended tasks held now. */
  held(): number;
}

/** Reports from an agent's stream, each to the part it concerns. */
export interface ReportRouter {
  handleReport(report: AgentReport, agent: AgentRuntime, session: AgentSession, logger: Logger): void;
}

/** Coordination rounds: when they run and what each plans. */
export interface CoordinationRounds {
  requestSchedule(trigger?: string): void;
}

/** Each round's record: its states, tasks and figures, and the recent ones. */
export interface RoundBook {
  startRound(trigger: string): RoundRuntime;
  moveRound(rr: RoundRuntime, trigger: RoundTrigger, reason: string): void;
  roundTaskEnded(taskId: string, ok: boolean, action: string, ms: number): void;
  finishRound(rr: RoundRuntime, succeeded: boolean): void;
}

/** Reservations on the Resource Manager, and moves of resources between agents. */
export interface Reservations {
  reserve(reservationId: string, holder: string, agentId: string, resources: Array<{ resourceId: string; amount: number }>): Promise<unknown>;
  reserveFor(task: Task, directive: CoordinationDirective, agentId: string): Promise<void>;
  release(reservationId: string): void;
  adjustResources(move: ResourceMove, roundId: string): Promise<void>;
}

/** Step 5 for a task one agent runs: its directive, reserved, journaled and handed to delivery. */
export interface Assignments {
  assign(rt: TaskRuntime, agent: AgentRuntime, resources: Array<{ resourceId: string; amount: number }>, correlationId: string): Promise<boolean>;
}

/** Coalitions: tasks that need several agents, formed all or nothing. */
export interface Coalitions {
  assignCoalition(rt: TaskRuntime, members: Array<{ agentId: string; role: string; resources: Array<{ resourceId: string; amount: number }> }>, leader: string, correlationId: string): Promise<boolean>;
  /** Cancels and releases every directive of the task's current attempt. */
  dissolve(rt: TaskRuntime, reason: string): void;
}

/** The parts, as each sees the others. */
export interface CoordinatorParts {
  registry: AgentRegistry;
  delivery: DirectiveDelivery;
  engine: TaskEngine;
  router: ReportRouter;
  rounds: CoordinationRounds;
  book: RoundBook;
  reservations: Reservations;
  assignments: Assignments;
  coalitions: Coalitions;
  retention: TaskRetention;
}
