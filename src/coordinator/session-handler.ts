import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { JournalSessionSchema } from "../../gen/baton/v1/journal_pb.js";
import { HelloSchema, type AgentReport, type ConnectRequest, type ConnectResponse, type Hello } from "../../gen/baton/v1/session_pb.js";
import { BatonError, Code, deadlineExceeded, failedPrecondition, invalidArgument, permissionDenied, quote, unauthenticated } from "../errors.js";
import { logFailure, type Logger } from "../logging.js";
import { assertHelloFits, assertProtocolValid, isValidAgentId, PROTOCOL_VERSION } from "../protocol/index.js";
import type { HandlerContext } from "../rpc/index.js";
import { createKeyring, createReplayGuard, type SpiffeIdentity } from "../security/index.js";
import { PeriodicWheel, withinTurn } from "../streams/index.js";
import { AgentSession, welcomeFrame, type SessionSecurity } from "./agent-session.js";
import { clockSkewRefusal, helloClockSkew } from "./clock-skew.js";
import { assertServing, record, stamp, type CoordinatorState } from "./coordinator-state.js";
import type { CoordinatorParts } from "./parts.js";
import type { AgentRuntime } from "./runtime.js";

/**
 * The session handler, Coordinator.Connect: reads and checks the Hello, opens (or resumes,
 * or replaces) the agent's session, then reads its frames and hands each report to the
 * report router.
 */
export function createSessionHandler(state: CoordinatorState, parts: CoordinatorParts): { runSession(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncGenerator<ConnectResponse> } {
  const { config } = state;
  // One wheel for every session's heartbeats, by interval (a reloaded configuration may change it for new sessions).
  const wheels = new Map<number, PeriodicWheel>();
  const heartbeatWheel = (intervalMs: number): PeriodicWheel => {
    let wheel = wheels.get(intervalMs);
    if (!wheel) wheels.set(intervalMs, (wheel = new PeriodicWheel(intervalMs)));
    return wheel;
  };

  async function* runSession(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncGenerator<ConnectResponse> {
    assertServing(state);
    const iterator = requests[Symbol.asyncIterator]();
    const hello = await readHello(iterator);
    const identity = ctx.identity as SpiffeIdentity | undefined;
    authorizeHello(hello, identity);
    // Measured on the replay guard's clock (the wall clock): a skew it would refuse ends the session here, before any work.
    const skew = helloClockSkew(hello, config.security.messageSecurity === "off" ? undefined : config.security.replayWindowMs, Date.now());
    if (skew) parts.registry.agentRuntime(hello.agentId).clockSkewMs = skew.skewMs;
    if (skew?.refusal) {
      parts.registry.onClockSkewRefused(parts.registry.agentRuntime(hello.agentId), skew.refusal);
      yield* clockSkewRefusal(skew.refusal, { coordinatorId: config.coordinatorId, protocolVersion: PROTOCOL_VERSION });
    }
    // The agent's inventory goes to the Resource Manager; a resource another agent offers refuses the session.
    await state.inventory.register(hello.agentId, hello.resources);
    assertServing(state);
    const cfg = config.session;
    const maxInFlight = Math.min(hello.maxInFlight || cfg.defaultMaxInFlight, cfg.maxInFlightLimit);
    const agent = parts.registry.agentRuntime(hello.agentId);
    const resumed = hello.sessionId !== "" && hello.sessionId === agent.sessionId && agent.state !== AgentState.OFFLINE;
    const sessionId = resumed ? agent.sessionId : randomUUID();
    // Not ctx.logger: protocol lines carry each message's own correlation_id, not the stream's.
    const logger = state.logger.child({ agent_id: hello.agentId, session_id: sessionId });
    const session: AgentSession = new AgentSession({
      agentId: hello.agentId,
      sessionId,
      hello,
      identity: identity?.uri ?? "",
      peer: ctx.peer.address,
      coordinatorId: config.coordinatorId,
      protocolVersion: PROTOCOL_VERSION,
      heartbeats: heartbeatWheel(cfg.heartbeatIntervalMs),
      heartbeatMisses: cfg.heartbeatMisses,
      maxInFlight,
      outboxCapacity: cfg.outboxCapacity,
      maxBatch: cfg.maxBatch,
      logger,
      protocolLevel: config.log.protocolLevel,
      now: state.now,
      onClose: (s, error) => parts.registry.onSessionClosed(agent, s, error),
      security: sessionSecurity(),
      onClockSkew: (skewMs, refusal) => (refusal ? parts.registry.onClockSkewRefused(agent, refusal) : void (agent.clockSkewMs = skewMs)),
    });
    const replaced = agent.session;
    agent.session = session;
    replaced?.close(new BatonError(Code.ABORTED, `session replaced by a newer session of agent ${hello.agentId}`));
    if (resumed) {
      // Whatever was written to the old stream and not acknowledged is replayed, in order.
      agent.outbox.disconnect();
    } else {
      // A new session: what the agent held under its old one is gone with it.
      parts.delivery.handBack(agent, agent.outbox.drainAll().map((e) => ({ directive: e.directive, accepted: e.state === "accepted" })), "agent_unavailable");
      agent.outbox = parts.registry.newOutbox(maxInFlight);
    }
    agent.outbox.maxInFlight = maxInFlight;
    Object.assign(agent, { hello, identity: session.identity, peer: session.peer, sessionId, connectedAt: session.connectedAt, lastSeen: session.lastSeen, maxInFlight, draining: false, stateReason: "", pushesStatus: false });
    if (hello.resources.length > 0) state.resourceHolders.add(agent);
    else state.resourceHolders.delete(agent);
    clearTimeout(agent.graceTimer);
    agent.graceTimer = undefined;
    agent.state = agent.breaker.state === "open" ? AgentState.OFFLINE : AgentState.ONLINE;
    logger.info({ max_in_flight: maxInFlight, peer: ctx.peer.address, resumed, last_sequence: String(hello.lastSequence), replaced: replaced?.sessionId, breaker: agent.breaker.state, clock_skew_ms: skew?.skewMs }, "agent session opened");
    void record(state, { sessions: [create(JournalSessionSchema, { agentId: agent.agentId, sessionId, nextSequence: agent.outbox.nextSequence, lastSeen: stamp(state) })] });
    if (agent.state === AgentState.ONLINE) state.events.emit("agent.online", agent);

    // The signal's reason says who ended it: the agent (CANCELLED), shutdown, or a revoked certificate.
    const onCancel = () => session.close(ctx.signal.reason instanceof BatonError ? ctx.signal.reason : new BatonError(Code.CANCELLED, "the agent cancelled its session"));
    ctx.signal.addEventListener("abort", onCancel, { once: true });
    void readReports(iterator, agent, session, logger);
    queueMicrotask(() => {
      parts.delivery.pump(agent);
      parts.rounds.requestSchedule("agent_joined");
    });
    try {
      // Yielded here, not handed to frames(): a generator's arguments live as long as it does, and the Welcome carries the session's key.
      yield welcomeFrame(session, { heartbeatIntervalMs: cfg.heartbeatIntervalMs, ackTimeoutMs: cfg.ackTimeoutMs, syncIntervalMs: cfg.syncIntervalMs, coordinatorId: config.coordinatorId, protocolVersion: PROTOCOL_VERSION, resumed, heartbeatMisses: cfg.heartbeatMisses, disconnectGraceMs: cfg.disconnectGraceMs, leaseMs: config.delivery.leaseMs, statusTimeoutMs: cfg.statusTimeoutMs });
      yield* session.frames();
    } finally {
      ctx.signal.removeEventListener("abort", onCancel);
      session.close();
    }
  }

  async function readHello(iterator: AsyncIterator<ConnectRequest>): Promise<Hello> {
    const ms = config.session.helloTimeoutMs;
    // A plain timer, cleared once the Hello (or the stream's end, a cancelled call's too) is
    // read: an AbortController aborted for it built a DOMException, stack and all, on every
    // session (2.5 % of the coordinator's CPU while 1,000 agents connect).
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(deadlineExceeded(`no hello within ${ms} ms of opening Connect`)), ms);
    });
    let first: IteratorResult<ConnectRequest>;
    try {
      first = await Promise.race([iterator.next(), timeout]);
    } finally {
      clearTimeout(timer);
    }
    if (first.done) throw invalidArgument("Connect closed before hello");
    const kind = first.value.kind;
    if (kind.case !== "hello") throw invalidArgument(`the first message on Connect must be hello, got ${kind.case ?? "an empty ConnectRequest"}`);
    return kind.value;
  }

  function authorizeHello(hello: Hello, identity: SpiffeIdentity | undefined): void {
    assertProtocolValid(HelloSchema, hello);
    // What an agent offers is copied into every ListAgents answer and agent event: bounded here.
    assertHelloFits(hello, config.limits);
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

  /** Whether a batch holds only progress and status reports. */
  const agentPaced = (reports: readonly AgentReport[]): boolean => reports.every((r) => r.kind.case === "progressUpdate" || r.kind.case === "statusResponse");

  /** How long one turn of the event loop may spend on agent-paced frames before their readers wait for the next, ms. */
  const INPUT_TURN_BUDGET_MS = 10;

  async function readReports(iterator: AsyncIterator<ConnectRequest>, agent: AgentRuntime, session: AgentSession, logger: Logger): Promise<void> {
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done || session.isClosed) break;
        session.touch();
        agent.lastSeen = session.lastSeen;
        // Hundreds of agents flooding progress made loop iterations of seconds: pings went
        // unanswered and connections dropped (bench ingest). Past the turn's budget, such a
        // stream's rest waits in grpc-js for the next turn. Acks and completions do not wait:
        // they are bounded by the work handed out, and finishing work comes before more input.
        const paced = handleFrame(next.value, agent, session, logger);
        const wait = paced ? withinTurn(INPUT_TURN_BUDGET_MS) : undefined;
        if (wait) await wait;
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

  /** Routes one frame; true when it carried only what an agent sends at its own pace (progress, status), not the end of work the coordinator gave it. */
  function handleFrame(frame: ConnectRequest, agent: AgentRuntime, session: AgentSession, logger: Logger): boolean {
    const kind = frame.kind;
    switch (kind.case) {
      case "heartbeat":
        logger.trace("heartbeat");
        return false;
      case "reports":
        if (session.signed) throw unauthenticated("this coordinator requires signed reports: send signed_reports under the session key from Welcome");
        if (kind.value.sender && kind.value.sender !== session.agentId) {
          throw permissionDenied(`agent ${session.agentId} may not send reports as ${JSON.stringify(kind.value.sender)}`);
        }
        for (const report of kind.value.reports) parts.router.handleReport(report, agent, session, logger);
        parts.delivery.pump(agent);
        return agentPaced(kind.value.reports);
      case "hello":
        throw invalidArgument("hello may be sent only once per session");
      case "signedReports": {
        const batch = session.openReports(kind.value);
        for (const report of batch.reports) parts.router.handleReport(report, agent, session, logger);
        parts.delivery.pump(agent);
        return agentPaced(batch.reports);
      }
      default:
        throw invalidArgument("ConnectRequest: kind is required (hello, heartbeat or reports)");
    }
  }

  /** A new session's message keys and replay guard, when message security is on. */
  function sessionSecurity(): SessionSecurity | undefined {
    const sec = config.security;
    if (sec.messageSecurity === "off") return undefined;
    const keyring = createKeyring({ rotationMs: sec.keyRotationMs, graceMs: sec.keyGraceMs, onListenerError: (err) => state.logger.error({ err }, "key rotation listener failed") });
    keyring.onRotate(() => state.events.emit("session.key_rotated"));
    return {
      keyring,
      replay: createReplayGuard({ windowMs: sec.replayWindowMs }),
      sensitiveInputOf: (directive) => {
        const owner = state.directiveTask.get(directive.directiveId);
        return owner ? state.tasks.get(owner.taskId)?.task.spec?.sensitiveInput : undefined;
      },
    };
  }

  return { runSession };
}
