import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import {
  AckOutcome,
  CoordinationDirectiveSchema,
  DirectiveAckSchema,
  AgentStatusResponseSchema,
  ProgressUpdateSchema,
  TaskCompletionSchema,
  type AgentStatusResponse,
  type CoordinationDirective,
  type DirectiveAck,
  type ProgressUpdate,
  type TaskCompletion,
} from "../../gen/baton/v1/coordination_pb.js";
import { ConnectResponseSchema, HelloSchema, type AgentReport, type ConnectRequest, type ConnectResponse, type Hello } from "../../gen/baton/v1/session_pb.js";
import type { BatonConfig } from "../config.js";
import { BatonError, Code, deadlineExceeded, failedPrecondition, invalidArgument, notFound, permissionDenied, unauthenticated, unavailable, resourceExhausted } from "../errors.js";
import { logProtocolMessage, type Logger } from "../logging.js";
import { assertProtocolValid, isValidAgentId, PROTOCOL_VERSION } from "../protocol/index.js";
import type { HandlerContext } from "../rpc/index.js";
import type { SpiffeIdentity } from "../security/index.js";
import { delay } from "../streams/index.js";
import { AgentRegistry, type AgentEntry } from "./agent-registry.js";
import { AgentSession, welcomeFrame } from "./agent-session.js";

/** What the coordinator reports as it works; later the event log and WatchEvents feed on it. */
export interface CoordinatorEvents {
  "agent.online": [entry: AgentEntry];
  "agent.disconnected": [entry: AgentEntry, reason: string];
  "agent.draining": [entry: AgentEntry];
  "directive.sent": [directive: CoordinationDirective];
  "directive.ack": [ack: DirectiveAck, directive: CoordinationDirective];
  "directive.progress": [update: ProgressUpdate];
  "directive.completed": [completion: TaskCompletion, directive: CoordinationDirective | undefined];
}

interface DirectiveRecord {
  directive: CoordinationDirective;
  agentId: string;
  accepted: boolean;
}

/** Options of the coordinator. */
export interface CoordinatorOptions {
  config: BatonConfig;
  logger: Logger;
}

// Remember settled completions so a resent TaskCompletion is acknowledged, not applied twice.
const SETTLED_MEMORY = 100_000;

/**
 * The coordinator's message handler and agent sessions: it owns the Connect stream's
 * logic, sends directives and status requests, and settles what agents report.
 */
export class Coordinator extends EventEmitter<CoordinatorEvents> {
  readonly registry = new AgentRegistry();
  private readonly directives = new Map<string, DirectiveRecord>();
  private readonly settled = new Set<string>();
  private readonly logger: Logger;
  private readonly config: BatonConfig;
  private stopping = false;

  constructor(options: CoordinatorOptions) {
    super();
    this.config = options.config;
    this.logger = options.logger.child({ component: "coordinator" });
  }

  /** The Coordinator.Connect handler: one agent session per stream. */
  connect = (requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncIterable<ConnectResponse> => this.runSession(requests, ctx);

  private async *runSession(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncGenerator<ConnectResponse> {
    if (this.stopping) throw unavailable("the coordinator is shutting down");
    const iterator = requests[Symbol.asyncIterator]();
    const hello = await this.readHello(iterator, ctx);
    const identity = ctx.identity as SpiffeIdentity | undefined;
    this.authorizeHello(hello, identity);
    const cfg = this.config.session;
    const maxInFlight = Math.min(hello.maxInFlight || cfg.defaultMaxInFlight, cfg.maxInFlightLimit);
    const sessionId = randomUUID();
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
      ackTimeoutMs: cfg.ackTimeoutMs,
      maxInFlight,
      outboxCapacity: cfg.outboxCapacity,
      maxBatch: cfg.maxBatch,
      logger,
      protocolLevel: this.config.log.protocolLevel,
      onClose: (s, error) => this.onSessionClosed(s, error),
    });
    const replaced = this.registry.attach(session);
    replaced?.close(new BatonError(Code.ABORTED, `session replaced by a newer session of agent ${hello.agentId}`));
    logger.info({ max_in_flight: maxInFlight, peer: ctx.peer.address, replaced: replaced?.sessionId }, "agent session opened");
    this.emit("agent.online", this.registry.get(hello.agentId)!);

    const onCancel = () => session.close(new BatonError(Code.CANCELLED, "the agent cancelled its session"));
    ctx.signal.addEventListener("abort", onCancel, { once: true });
    void this.readReports(iterator, session, logger);
    try {
      yield* session.frames(
        welcomeFrame(session, {
          heartbeatIntervalMs: cfg.heartbeatIntervalMs,
          ackTimeoutMs: cfg.ackTimeoutMs,
          coordinatorId: this.config.coordinatorId,
          protocolVersion: PROTOCOL_VERSION,
          resumed: false,
        }),
      );
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
    if (!isValidAgentId(hello.agentId)) throw invalidArgument(`Hello: agent_id ${JSON.stringify(hello.agentId.slice(0, 64))} must be 1 to 128 of A-Z a-z 0-9 . _ -`);
    if (!identity) throw unauthenticated("Connect needs a client certificate with a SPIFFE id");
    if (identity.role !== "managed_agent") throw permissionDenied(`${identity.uri} has role ${identity.role}; only managed_agent may open an agent session`);
    if (identity.name !== hello.agentId) throw permissionDenied(`certificate ${identity.uri} may not connect as agent ${JSON.stringify(hello.agentId)}`);
    if (hello.protocolVersion && hello.protocolVersion.split(".")[0] !== PROTOCOL_VERSION.split(".")[0]) {
      throw failedPrecondition(`protocol version ${hello.protocolVersion} is not supported; this coordinator speaks ${PROTOCOL_VERSION}`);
    }
    const seen = new Set<string>();
    hello.resources.forEach((resource, i) => {
      if (!resource.resourceId) throw invalidArgument(`Hello: resources[${i}].resource_id is required`);
      if (seen.has(resource.resourceId)) throw invalidArgument(`Hello: resources[${i}].resource_id ${JSON.stringify(resource.resourceId)} is listed twice`);
      if (!(resource.capacity >= 0)) throw invalidArgument(`Hello: resources[${i}].capacity must be 0 or more`);
      seen.add(resource.resourceId);
    });
    hello.capabilities.forEach((capability, i) => {
      if (!capability.trim()) throw invalidArgument(`Hello: capabilities[${i}] is empty`);
    });
  }

  private async readReports(iterator: AsyncIterator<ConnectRequest>, session: AgentSession, logger: Logger): Promise<void> {
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done || session.isClosed) break;
        session.touch();
        this.handleFrame(next.value, session, logger);
      }
      session.close();
    } catch (err) {
      const error = BatonError.from(err);
      if (error.code === Code.INTERNAL) logger.error({ err }, "agent session failed");
      session.close(error);
    }
  }

  private handleFrame(frame: ConnectRequest, session: AgentSession, logger: Logger): void {
    const kind = frame.kind;
    switch (kind.case) {
      case "heartbeat":
        logger.trace("heartbeat");
        return;
      case "reports":
        if (kind.value.sender && kind.value.sender !== session.agentId) {
          throw permissionDenied(`agent ${session.agentId} may not send reports as ${JSON.stringify(kind.value.sender)}`);
        }
        for (const report of kind.value.reports) this.handleReport(report, session, logger);
        return;
      case "hello":
        throw invalidArgument("hello may be sent only once per session");
      case "signedReports":
        throw failedPrecondition("message signing is not enabled on this coordinator; send reports unsigned");
      default:
        throw invalidArgument("ConnectRequest: kind is required (hello, heartbeat or reports)");
    }
  }

  private checkSource(source: string, session: AgentSession, what: string): void {
    if (source !== session.agentId) throw permissionDenied(`agent ${session.agentId} may not send ${what} as ${JSON.stringify(source)}`);
  }

  private logReceived(session: AgentSession, correlationId: string, messageType: string, logger: Logger): void {
    logProtocolMessage(logger, { correlation_id: correlationId, source: session.agentId, destination: this.config.coordinatorId, message_type: messageType }, "received", this.config.log.protocolLevel);
  }

  /** The directive an agent's report names, refusing another agent's directive. */
  private ownDirective(directiveId: string, session: AgentSession, what: string): DirectiveRecord | undefined {
    const record = this.directives.get(directiveId);
    if (record && record.agentId !== session.agentId) {
      throw permissionDenied(`agent ${session.agentId} may not send ${what} for directive ${directiveId} of agent ${record.agentId}`);
    }
    return record;
  }

  private handleReport(report: AgentReport, session: AgentSession, logger: Logger): void {
    const kind = report.kind;
    switch (kind.case) {
      case "statusResponse": {
        assertProtocolValid(AgentStatusResponseSchema, kind.value);
        this.checkSource(kind.value.sourceAgent, session, "a status response");
        this.logReceived(session, kind.value.requestId, "agent_status_response", logger);
        if (!session.resolveStatus(kind.value)) logger.warn({ request_id: kind.value.requestId }, "status response for no pending request");
        return;
      }
      case "directiveAck": {
        const ack = kind.value;
        assertProtocolValid(DirectiveAckSchema, ack);
        this.checkSource(ack.sourceAgent, session, "an ack");
        const record = this.ownDirective(ack.directiveId, session, "an ack");
        this.logReceived(session, record?.directive.correlationId || ack.directiveId, "directive_ack", logger);
        if (!record) {
          logger.warn({ directive_id: ack.directiveId }, "ack for an unknown directive");
          return;
        }
        // An ack for an earlier delivery attempt must not settle a redelivery.
        if (ack.attempt !== 0 && ack.attempt !== record.directive.attempt) {
          logger.debug({ directive_id: ack.directiveId, attempt: ack.attempt, current: record.directive.attempt }, "stale ack ignored");
          return;
        }
        if (ack.outcome === AckOutcome.ACCEPTED) record.accepted = true;
        else this.directives.delete(ack.directiveId);
        this.emit("directive.ack", ack, record.directive);
        return;
      }
      case "progressUpdate": {
        const update = kind.value;
        assertProtocolValid(ProgressUpdateSchema, update);
        this.checkSource(update.sourceAgent, session, "progress");
        const record = update.directiveId ? this.ownDirective(update.directiveId, session, "progress") : undefined;
        this.logReceived(session, record?.directive.correlationId || update.eventId, "progress_update", logger);
        this.emit("directive.progress", update);
        return;
      }
      case "taskCompletion": {
        const completion = kind.value;
        assertProtocolValid(TaskCompletionSchema, completion);
        this.checkSource(completion.sourceAgent, session, "a completion");
        const record = this.ownDirective(completion.directiveId, session, "a completion");
        this.logReceived(session, record?.directive.correlationId || completion.directiveId, "task_completion", logger);
        if (!this.settled.has(completion.eventId)) {
          this.remember(completion.eventId);
          this.directives.delete(completion.directiveId);
          this.emit("directive.completed", completion, record?.directive);
        }
        // Acknowledge every copy: the agent keeps a completion until it hears this.
        session.send(
          { $typeName: "baton.v1.CoordinatorMessage", kind: { case: "completionAck", value: { $typeName: "baton.v1.CompletionAck", eventId: completion.eventId, directiveId: completion.directiveId } } },
          record?.directive.correlationId || completion.directiveId,
        );
        return;
      }
      default:
        throw invalidArgument("AgentReport: kind is required");
    }
  }

  private remember(eventId: string): void {
    this.settled.add(eventId);
    if (this.settled.size > SETTLED_MEMORY) {
      // Sets iterate in insertion order: the first is the oldest.
      this.settled.delete(this.settled.values().next().value!);
    }
  }

  private onSessionClosed(session: AgentSession, error: BatonError | undefined): void {
    if (!this.registry.detach(session)) return;
    const reason = error?.message ?? "the agent closed its session";
    this.logger.info({ agent_id: session.agentId, session_id: session.sessionId, reason }, "agent session closed");
    this.emit("agent.disconnected", this.registry.get(session.agentId)!, reason);
  }

  private liveSession(agentId: string): AgentSession {
    const entry = this.registry.get(agentId);
    if (!entry) throw notFound(`no agent ${JSON.stringify(agentId)} is known`);
    if (!entry.session) throw unavailable(`agent ${agentId} has no open session`);
    return entry.session;
  }

  /** Asks an agent for its status over its stream and waits for the answer. */
  async requestStatus(agentId: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ response: AgentStatusResponse; roundTripMs: number }> {
    return this.liveSession(agentId).requestStatus(options.timeoutMs ?? this.config.session.statusTimeoutMs, options.signal);
  }

  /** Sends a directive to an agent; fills in its id, timestamp, target, sequence and attempt. */
  sendDirective(agentId: string, init: MessageInitShape<typeof CoordinationDirectiveSchema>): CoordinationDirective {
    const session = this.liveSession(agentId);
    if (session.draining) throw failedPrecondition(`agent ${agentId} is draining and takes no new work`);
    const inFlight = [...this.directives.values()].filter((r) => r.agentId === agentId).length;
    if (inFlight >= session.maxInFlight) throw resourceExhausted(`agent ${agentId} holds ${inFlight} directives, its in-flight cap`);
    const directive = create(CoordinationDirectiveSchema, {
      directiveId: randomUUID(),
      timestamp: timestampNow(),
      attempt: 1,
      ...init,
      targetAgent: agentId,
    });
    directive.correlationId ||= directive.directiveId;
    assertProtocolValid(CoordinationDirectiveSchema, directive);
    session.assignSequence(directive);
    this.directives.set(directive.directiveId, { directive, agentId, accepted: false });
    session.send({ $typeName: "baton.v1.CoordinatorMessage", kind: { case: "directive", value: directive } }, directive.correlationId);
    this.emit("directive.sent", directive);
    return directive;
  }

  /** Tells an agent to take no new work and to reconnect elsewhere when done. */
  drain(agentId: string, reason: string, reconnectTo = ""): AgentEntry {
    const session = this.liveSession(agentId);
    session.draining = true;
    session.sendFrame(create(ConnectResponseSchema, { kind: { case: "drain", value: { reason, reconnectTo } } }));
    const entry = this.registry.get(agentId)!;
    this.emit("agent.draining", entry);
    return entry;
  }

  /** Directives sent and not yet completed, for an agent or all. */
  pendingDirectives(agentId?: string): CoordinationDirective[] {
    return [...this.directives.values()].filter((r) => !agentId || r.agentId === agentId).map((r) => r.directive);
  }

  /** Closes every session: agents are told to reconnect, then streams end with UNAVAILABLE. */
  shutdown(): void {
    this.stopping = true;
    for (const session of this.registry.sessions()) {
      session.sendFrame(create(ConnectResponseSchema, { kind: { case: "drain", value: { reason: "coordinator shutting down" } } }));
      session.close(unavailable("the coordinator is shutting down"));
    }
  }
}

/** Agent state names for operators ("online"). */
export function agentStateName(state: AgentState): string {
  return AgentState[state]?.toLowerCase() ?? "unknown";
}
