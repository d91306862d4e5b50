import { EventEmitter } from "node:events";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { CoordinationRound, ExplainTaskResponse, Task, TaskSpec, TaskState } from "../../gen/baton/v1/control_pb.js";
import type { AgentStatusResponse, CoordinationDirective, CoordinationDirectiveSchema } from "../../gen/baton/v1/coordination_pb.js";
import { ConnectResponseSchema, type ConnectRequest, type ConnectResponse } from "../../gen/baton/v1/session_pb.js";
import { unavailable, type Code } from "../errors.js";
import type { HandlerContext } from "../rpc/index.js";
import { createAgentRegistry } from "./agent-registry.js";
import { createAssignments } from "./assignment.js";
import { createCoalitions } from "./coalitions.js";
import { createCoordinationRounds } from "./coordination-rounds.js";
import { createCoordinatorState, durable, type CoordinatorOptions, type CoordinatorState } from "./coordinator-state.js";
import { createDirectiveDelivery } from "./directive-delivery.js";
import { explainTask } from "./explain.js";
import { createJournalRecovery, type JournalRecovery } from "./journal-recovery.js";
import type { CoordinatorParts } from "./parts.js";
import { createReportRouter } from "./report-router.js";
import { createReservations } from "./reservations.js";
import { createRoundBook } from "./round-book.js";
import type { AgentView, CoordinatorEvents } from "./runtime.js";
import { createSessionHandler } from "./session-handler.js";
import { createTaskControl, type TaskControl } from "./task-control.js";
import { createTaskEngine } from "./task-engine.js";
import { createTaskRetention } from "./task-retention.js";

/**
 * The coordinator's message handler and state tracker: agent sessions over Connect,
 * durable tasks, directive delivery with acks, retries, leases and circuit breakers,
 * and the spec's error handling (agent_unavailable, resource_conflict, directive_failed).
 * This class is its face; each job is a part of its own (see parts.ts), all sharing one state.
 */
export class Coordinator extends EventEmitter<CoordinatorEvents> {
  private readonly state: CoordinatorState;
  private readonly parts: CoordinatorParts;
  private readonly control: TaskControl;
  private readonly recovery: JournalRecovery;
  private readonly book: ReturnType<typeof createRoundBook>;
  private readonly session: ReturnType<typeof createSessionHandler>;

  constructor(options: CoordinatorOptions) {
    super();
    const state = createCoordinatorState(options, this, (err) => this.recovery.onJournalFailed(err));
    // Filled in below: no part calls another while it is being made.
    const parts = {} as CoordinatorParts;
    this.book = createRoundBook(state, parts);
    Object.assign(parts, {
      registry: createAgentRegistry(state, parts),
      delivery: createDirectiveDelivery(state, parts),
      engine: createTaskEngine(state, parts),
      router: createReportRouter(state, parts),
      rounds: createCoordinationRounds(state, parts),
      book: this.book,
      reservations: createReservations(state, parts),
      assignments: createAssignments(state, parts),
      coalitions: createCoalitions(state, parts),
      retention: createTaskRetention(state, parts),
    } satisfies CoordinatorParts);
    this.state = state;
    this.parts = parts;
    this.control = createTaskControl(state, parts);
    this.recovery = createJournalRecovery(state, parts);
    this.session = createSessionHandler(state, parts);
  }

  /** Loads the journal: tasks and directives survive restarts; their agents may resume. */
  async start(): Promise<void> {
    await this.recovery.load();
    this.parts.rounds.requestSchedule();
  }

  /** This coordinator's id. */
  get id(): string {
    return this.state.config.coordinatorId;
  }

  /** Resolves once every change made so far is durable: answers wait for it, so none shows a state the journal may not keep. */
  durable(): Promise<void> {
    return durable(this.state);
  }

  /** The Coordinator.Connect handler: one agent session per stream. */
  connect = (requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncIterable<ConnectResponse> => this.session.runSession(requests, ctx);

  /** The agents known, sorted by id. */
  agents(): AgentView[] {
    return this.parts.registry.agents();
  }

  /** One agent. */
  agent(agentId: string): AgentView | undefined {
    return this.parts.registry.agent(agentId);
  }

  /** The utilization (0..1) an agent last reported in a status answer or push (the synced view); undefined before its first. */
  reportedUtilization(agentId: string): number | undefined {
    return this.state.reportedUtilization.get(agentId);
  }

  /** Asks an agent for its status over its stream and waits for the answer. */
  requestStatus(agentId: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ response: AgentStatusResponse; roundTripMs: number }> {
    return this.parts.registry.requestStatus(agentId, options);
  }

  /** Tells an agent to take no new work and to reconnect elsewhere when done. */
  drain(agentId: string, reason: string, reconnectTo = ""): AgentView {
    return this.parts.registry.drain(agentId, reason, reconnectTo);
  }

  /** Takes a draining agent back into service. */
  undrain(agentId: string): AgentView {
    return this.parts.registry.undrain(agentId);
  }

  /** Sends a directive outside any task (operators, tests); it is tracked like any other. */
  sendDirective(agentId: string, init: MessageInitShape<typeof CoordinationDirectiveSchema>): CoordinationDirective {
    return this.parts.delivery.sendDirective(agentId, init);
  }

  /** Directives held for an agent (or all), not yet completed. */
  pendingDirectives(agentId?: string): CoordinationDirective[] {
    return this.parts.delivery.pendingDirectives(agentId);
  }

  /** Rounds under way and the most recent finished ones. */
  coordination(): { rounds: CoordinationRound[]; recent: CoordinationRound[] } {
    return this.book.coordination();
  }

  /** Accepts a task; resolves once it is durable. The same task_id submits once. */
  submitTask(spec: TaskSpec, submitter: string): Promise<{ task: Task; created: boolean }> {
    return this.control.submitTask(spec, submitter);
  }

  /** Accepts many tasks at once, each on its own terms, with one durable write for all. */
  submitTasks(specs: TaskSpec[], submitter: string): Promise<Array<{ taskId: string; code: Code; message: string; created: boolean }>> {
    return this.control.submitTasks(specs, submitter);
  }

  /** How many tasks are in each state. */
  taskCounts(): Map<TaskState, number> {
    return this.control.taskCounts();
  }

  /** One task. */
  getTask(taskId: string): Task {
    return this.control.getTask(taskId);
  }

  /** Tasks in creation order, filtered by state, paged by task id. */
  listTasks(states: TaskState[], pageSize: number, after: string): { tasks: Task[]; next: string } {
    return this.control.listTasks(states, pageSize, after);
  }

  /** The page token that continues a listing after this task. */
  pageToken(taskId: string): string {
    return this.control.pageToken(taskId);
  }

  /** Why a task waits, agent by agent, or why the agents it went to won (Control.ExplainTask). */
  async explainTask(taskId: string): Promise<ExplainTaskResponse> {
    this.control.getTask(taskId);
    return explainTask(this.state, this.state.tasks.get(taskId)!);
  }

  /** Cancels a task; its agent is told and its handler's signal aborts. */
  cancelTask(taskId: string, reason: string): Promise<Task> {
    return this.control.cancelTask(taskId, reason);
  }

  /** Puts a dead-lettered task back to pending, its attempt count reset, its history kept. */
  resubmitTask(taskId: string): Promise<Task> {
    return this.control.resubmitTask(taskId);
  }

  /**
   * The first half of a graceful stop (SIGTERM): no new work is placed, every connected agent
   * is told to Drain, and directives in flight run on to their completions.
   */
  beginDrain(reason: string): void {
    const state = this.state;
    if (state.draining || state.stopping) return;
    state.draining = true;
    clearTimeout(state.wakeTimer);
    for (const agent of state.agentsById.values()) if (agent.session && !agent.draining) this.parts.registry.drain(agent.agentId, reason);
    // An agent that connects meanwhile is told too, once its session is welcomed.
    this.on("agent.online", (view) =>
      setImmediate(() => {
        const agent = state.agentsById.get(view.agentId);
        if (state.draining && !state.stopping && agent?.session && !agent.draining) this.parts.registry.drain(agent.agentId, reason);
      }),
    );
  }

  /** Why the coordinator takes no work now ("" when it does): stopping, draining, or its journal cannot be written. */
  get notReadyReason(): string {
    const state = this.state;
    if (state.stopping) return "the coordinator is stopping";
    if (state.draining) return "the coordinator is draining";
    if (state.recovering) return "the journal cannot be written";
    return "";
  }

  /** Directives handed to agents and not yet completed (or given up on). */
  get inFlight(): number {
    return this.state.directives.size;
  }

  /** Closes every session (agents are told to reconnect), stops timers, closes the journal. */
  async shutdown(): Promise<void> {
    const state = this.state;
    if (state.stopping) return;
    state.stopping = true;
    clearTimeout(state.wakeTimer);
    this.parts.retention.clear();
    for (const agent of state.agentsById.values()) {
      clearTimeout(agent.graceTimer);
      clearTimeout(agent.dueTimer);
      agent.dueTimer = undefined;
      agent.breaker.shutdown();
      const session = agent.session;
      if (session) {
        session.sendFrame(create(ConnectResponseSchema, { kind: { case: "drain", value: { reason: "coordinator shutting down" } } }));
        session.close(unavailable("the coordinator is shutting down"));
      }
    }
    await state.journal.close();
  }
}
