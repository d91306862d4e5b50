import type { AgentState } from "../../gen/baton/v1/common_pb.js";
import { TaskState, type CoordinationRound, type Task } from "../../gen/baton/v1/control_pb.js";
import type { CoordinationDirective, DirectiveAck, ProgressUpdate, TaskCompletion } from "../../gen/baton/v1/coordination_pb.js";
import type { Hello } from "../../gen/baton/v1/session_pb.js";
import type { AgentBreaker, BreakerState } from "../breakers/index.js";
import type { AgentSession } from "./agent-session.js";
import type { DirectiveOutbox } from "./directive-outbox.js";

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
  /**
   * Whether this session's agent pushes its status (it sent one unasked): it pushes at
   * connect and whenever its work changes, so its last push is its status now, however old.
   */
  pushesStatus: boolean;
}

/**
 * An agent as the coordinator shows it (Control, events, metrics): read-only, with no
 * timers, outbox or breaker to act on, only what they report.
 */
export interface AgentView {
  readonly agentId: string;
  readonly state: AgentState;
  readonly hello: Hello;
  readonly identity: string;
  readonly peer: string;
  /** The open session, if any. */
  readonly session: { readonly sessionId: string; readonly lastSeen: number } | undefined;
  /** The current or last session's id. */
  readonly sessionId: string;
  readonly connectedAt: Date;
  readonly lastSeen: number;
  readonly maxInFlight: number;
  readonly draining: boolean;
  /** Directives written to the agent and not yet answered. */
  readonly outbox: { readonly inFlight: number };
  readonly breaker: { readonly state: BreakerState };
  readonly clockSkewMs: number | undefined;
  readonly stateReason: string;
  readonly statusAt: number;
}

/** A task as the coordinator holds it while it works on it. */
export interface TaskRuntime {
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
  /** Every directive issued for it while it is open, superseded ones included: forgotten together when it ends. */
  issued: Set<string>;
  /** Set once it has ended and been forgotten (tasks.keepEnded): its place in creation order is a hole until compacted. */
  forgotten?: true;
}

/** A coalition being formed or running: the current attempt of a task that needs several agents. */
export interface CoalitionRuntime {
  coalitionId: string;
  leader: string;
  /** Member directives that accepted; the coalition is formed when all have. */
  accepted: Set<string>;
  /** Member directives that completed, with their results. */
  completed: Map<string, TaskCompletion>;
  timer: NodeJS.Timeout | undefined;
}

/** A coordination round under way. */
export interface RoundRuntime {
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

/** Whose a directive is: its task ("" for one sent outside any task) and agent. */
export interface DirectiveOwner {
  taskId: string;
  agentId: string;
  coalition?: boolean;
}

/** What the coordinator reports as it works; WatchEvents and metrics feed on it. */
export interface CoordinatorEvents {
  "agent.online": [agent: AgentView];
  "agent.disconnected": [agent: AgentView, reason: string];
  "agent.offline": [agent: AgentView, reason: string];
  "agent.draining": [agent: AgentView];
  /** A session or a signed batch refused because the agent's clock is beyond the replay window. */
  "agent.clock_skew_refused": [agent: AgentView, skewMs: number];
  "task.updated": [task: Task, reason: string];
  "round.updated": [round: CoordinationRound, reason: string];
  "directive.sent": [directive: CoordinationDirective];
  "directive.ack": [ack: DirectiveAck, directive: CoordinationDirective];
  /** Progress on a directive; taskId is its task's ("" when it belongs to none). */
  "directive.progress": [update: ProgressUpdate, taskId: string];
  "directive.completed": [completion: TaskCompletion, directive: CoordinationDirective | undefined];
  /** Ended tasks forgotten (tasks.keepEnded, tasks.keepEndedMs), how many at once. */
  "tasks.forgotten": [count: number];
  /** A session's message keys were rotated (security.keyRotationMs). */
  "session.key_rotated": [];
}

const TERMINAL = new Set([TaskState.SUCCEEDED, TaskState.DEAD_LETTERED, TaskState.CANCELLED]);

/** Whether a task state is final. */
export function isTerminal(state: TaskState): boolean {
  return TERMINAL.has(state);
}
