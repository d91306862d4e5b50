import { create } from "@bufbuild/protobuf";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { HelloSchema, ConnectResponseSchema } from "../../gen/baton/v1/session_pb.js";
import { createAgentBreaker, createBreakerClock, type BreakerState } from "../breakers/index.js";
import { failedPrecondition, notFound, unavailable, type BatonError } from "../errors.js";
import type { ClockSkewError } from "../security/index.js";
import type { AgentSession } from "./agent-session.js";
import type { CoordinatorState } from "./coordinator-state.js";
import { DirectiveOutbox } from "./directive-outbox.js";
import type { AgentRegistry, CoordinatorParts } from "./parts.js";
import type { AgentRuntime } from "./runtime.js";

/**
 * The agent registry: every agent known, across its sessions, with its outbox, its
 * breaker, its grace period after a disconnect, and its synced view (statusAt). An agent
 * lost is marked offline here, and its work handed back to delivery.
 */
export function createAgentRegistry(state: CoordinatorState, parts: CoordinatorParts): AgentRegistry {
  const { config, logger } = state;
  const breakerClock = createBreakerClock(config.breaker.rollingCountTimeoutMs);

  function newOutbox(maxInFlight: number, firstSequence = 1n, from?: DirectiveOutbox): DirectiveOutbox {
    const outbox = new DirectiveOutbox({ ...config.delivery, ackTimeoutMs: config.session.ackTimeoutMs }, maxInFlight, firstSequence);
    for (const entry of from?.list() ?? []) outbox.restore(entry.directive, entry.state, state.now());
    return outbox;
  }

  function agentRuntime(agentId: string, sessionId = ""): AgentRuntime {
    let rt = state.agentsById.get(agentId);
    if (rt) return rt;
    const created: AgentRuntime = {
      agentId,
      state: AgentState.DISCONNECTED,
      hello: create(HelloSchema, { agentId }),
      identity: "",
      peer: "",
      session: undefined,
      sessionId,
      connectedAt: new Date(state.now()),
      lastSeen: state.now(),
      maxInFlight: config.session.defaultMaxInFlight,
      draining: false,
      outbox: newOutbox(config.session.defaultMaxInFlight),
      breaker: createAgentBreaker(agentId, config.breaker, logger, (breakerState) => onBreaker(created, breakerState), breakerClock),
      outcomes: new Map(),
      graceTimer: undefined,
      dueTimer: undefined,
      clockSkewMs: undefined,
      stateReason: "",
      statusAt: 0,
      pushesStatus: false,
    };
    rt = created;
    state.agentsById.set(agentId, rt);
    state.agentRing.agents.push(rt);
    return rt;
  }

  function onBreaker(agent: AgentRuntime, breakerState: BreakerState): void {
    if (breakerState === "open") {
      if (agent.state !== AgentState.OFFLINE) markOffline(agent, "agent_unavailable: circuit open");
    } else if (agent.session) {
      // Half-open or closed with a live session: back in service (a half-open breaker lets one probe through).
      agent.state = agent.draining ? AgentState.DRAINING : AgentState.ONLINE;
      state.events.emit("agent.online", agent);
      parts.rounds.requestSchedule();
    }
  }

  /** The agent is gone: its work is replanned. `openBreaker: false` when it left cleanly, which is no failure of its own. */
  function markOffline(agent: AgentRuntime, reason: string, options: { openBreaker?: boolean } = {}): void {
    agent.state = AgentState.OFFLINE;
    agent.stateReason = reason;
    clearTimeout(agent.graceTimer);
    agent.graceTimer = undefined;
    logger.warn({ agent_id: agent.agentId, reason }, "agent offline: its work is replanned");
    state.events.emit("agent.offline", agent, reason);
    parts.rounds.requestSchedule("agent_lost");
    if (options.openBreaker !== false) agent.breaker.open();
    parts.delivery.handBack(agent, agent.outbox.drainAll().map((e) => ({ directive: e.directive, accepted: e.state === "accepted" })), "agent_unavailable");
  }

  function startGrace(agent: AgentRuntime, reason: string, clean = false): void {
    clearTimeout(agent.graceTimer);
    agent.graceTimer = setTimeout(() => {
      agent.graceTimer = undefined;
      if (!agent.session && agent.state !== AgentState.OFFLINE) markOffline(agent, `agent_unavailable: did not return within ${config.session.disconnectGraceMs} ms (${reason})`, { openBreaker: !clean });
    }, config.session.disconnectGraceMs);
    agent.graceTimer.unref();
  }

  /** A clock-skew refusal: logged at warn with the skew, counted (agent.clock_skew_refused), and shown on the agent. */
  function onClockSkewRefused(agent: AgentRuntime, refusal: ClockSkewError): void {
    agent.clockSkewMs = refusal.skewMs;
    agent.stateReason = refusal.message;
    logger.warn({ agent_id: agent.agentId, skew_ms: Math.round(refusal.skewMs), replay_window_ms: refusal.windowMs, reason: refusal.message }, "agent refused for clock skew");
    state.events.emit("agent.clock_skew_refused", agent, refusal.skewMs);
  }

  function onSessionClosed(agent: AgentRuntime, session: AgentSession, error: BatonError | undefined): void {
    if (agent.session !== session) return;
    agent.session = undefined;
    agent.lastSeen = session.lastSeen;
    agent.outbox.disconnect();
    clearTimeout(agent.dueTimer);
    agent.dueTimer = undefined;
    const reason = error?.message ?? "the agent closed its session";
    agent.stateReason = reason;
    logger.info({ agent_id: agent.agentId, session_id: session.sessionId, reason }, "agent session closed");
    if (agent.state !== AgentState.OFFLINE) {
      agent.state = AgentState.DISCONNECTED;
      // An agent that ended its stream itself (a half-close) left cleanly: that trips no breaker.
      startGrace(agent, reason, error === undefined);
    }
    state.events.emit("agent.disconnected", agent, reason);
  }

  function liveSession(agentId: string): AgentSession {
    const agent = state.agentsById.get(agentId);
    if (!agent) throw notFound(`no agent ${JSON.stringify(agentId)} is known`);
    if (!agent.session) throw unavailable(`agent ${agentId} has no open session`);
    return agent.session;
  }

  /** The agents known, sorted by id. */
  function agents(): AgentRuntime[] {
    return [...state.agentsById.keys()].sort().map((id) => state.agentsById.get(id)!);
  }

  /** One agent. */
  function agent(agentId: string): AgentRuntime | undefined {
    const rt = state.agentsById.get(agentId);
    if (rt?.session) rt.lastSeen = rt.session.lastSeen;
    return rt;
  }

  /** Tells an agent to take no new work and to reconnect elsewhere when done. */
  function drain(agentId: string, reason: string, reconnectTo = ""): AgentRuntime {
    const session = liveSession(agentId);
    const rt = state.agentsById.get(agentId)!;
    rt.draining = true;
    rt.state = AgentState.DRAINING;
    // Directives placed before now are held until their record is durable: the Drain goes
    // after them, not past them (an SDK defers what comes after a Drain). Once those writes
    // are durable, and their releases have run, it is sent.
    const frame = create(ConnectResponseSchema, { kind: { case: "drain", value: { reason, reconnectTo } } });
    const send = () => {
      if (rt.session === session && !session.isClosed && rt.draining) session.sendFrame(frame);
    };
    state.journal.barrier().then(
      () => setImmediate(send),
      () => send(),
    );
    state.events.emit("agent.draining", rt);
    return rt;
  }

  /** Takes a draining agent back into service, telling it (Drain.withdrawn); FAILED_PRECONDITION while the whole coordinator drains. */
  function undrain(agentId: string): AgentRuntime {
    const rt = state.agentsById.get(agentId);
    if (!rt) throw notFound(`no agent ${JSON.stringify(agentId)} is known`);
    if (state.draining) throw failedPrecondition(`the coordinator is draining: agent ${agentId} cannot be taken back into service`);
    if (!rt.draining) return rt;
    rt.draining = false;
    if (rt.state === AgentState.DRAINING) rt.state = AgentState.ONLINE;
    // The agent was told to drain on this session: it is told the Drain is withdrawn (an SDK defers work while draining).
    rt.session?.sendFrame(create(ConnectResponseSchema, { kind: { case: "drain", value: { withdrawn: true } } }));
    state.events.emit("agent.online", rt);
    parts.rounds.requestSchedule("agent_undrained");
    return rt;
  }

  /** Asks an agent for its status over its stream and waits for the answer. */
  async function requestStatus(agentId: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}) {
    return liveSession(agentId).requestStatus(options.timeoutMs ?? config.session.statusTimeoutMs, options.signal);
  }

  return { newOutbox, agentRuntime, markOffline, startGrace, onClockSkewRefused, onSessionClosed, liveSession, agents, agent, drain, undrain, requestStatus };
}

