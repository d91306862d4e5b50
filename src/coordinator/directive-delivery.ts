import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { CoordinationDirectiveSchema, type CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import { DeliveryState, JournalDirectiveSchema } from "../../gen/baton/v1/journal_pb.js";
import { BatonError, Code, failedPrecondition } from "../errors.js";
import { assertProtocolValid } from "../protocol/index.js";
import { record, stamp, type CoordinatorState } from "./coordinator-state.js";
import type { GiveUp } from "./directive-outbox.js";
import type { CoordinatorParts, DirectiveDelivery } from "./parts.js";
import type { AgentRuntime } from "./runtime.js";

/**
 * Directive delivery: each agent's outbox written to its stream as it lets directives out,
 * acks' and give-ups' outcomes for the agent's breaker, leases, hand-backs when an agent is
 * lost, and cancels. What a give-up means for the task is the task engine's to decide.
 */
export function createDirectiveDelivery(state: CoordinatorState, parts: CoordinatorParts): DirectiveDelivery {
  const { config } = state;

  // When each agent's pump timer fires (its outbox's next due time when it was set).
  const dueAt = new WeakMap<AgentRuntime, number | undefined>();

  function track(agent: AgentRuntime, directiveId: string): Promise<void> {
    const outcome = new Promise<void>((resolve, reject) => agent.outcomes.set(directiveId, { resolve, reject }));
    // Directives restored from the journal have no breaker call awaiting them; their failure is handled here, not thrown.
    outcome.catch(() => {});
    return outcome;
  }

  function settleOutcome(agent: AgentRuntime, directiveId: string, failure?: Error): void {
    const outcome = agent.outcomes.get(directiveId);
    if (!outcome) return;
    agent.outcomes.delete(directiveId);
    if (failure) outcome.reject(failure);
    else outcome.resolve();
  }

  /** Writes what the outbox lets out, handles what it gave up, and sets the next wake-up. */
  function pump(agent: AgentRuntime): void {
    const now = state.now();
    for (const giveUp of agent.outbox.expire(now)) onGiveUp(agent, giveUp);
    if (agent.session && agent.state !== AgentState.OFFLINE) {
      for (const directive of agent.outbox.take(now)) {
        agent.session.send({ $typeName: "baton.v1.CoordinatorMessage", kind: { case: "directive", value: directive } }, directive.correlationId);
        state.events.emit("directive.sent", directive);
      }
    }
    const due = agent.session ? agent.outbox.nextDue() : undefined;
    // A timer only when the next due time comes sooner than the one armed. Each ack moves it
    // later (the oldest unacked directive's deadline) and each completion may leave nothing
    // due: re-armed or cleared for those, it would be a timer per message. A timer armed too
    // early wakes, finds nothing due, and arms the next. Without a session, no timer.
    const armed = agent.dueTimer ? dueAt.get(agent) : undefined;
    if (armed !== undefined && agent.session && (due === undefined || armed <= due)) return;
    if (due === undefined && !agent.dueTimer) return;
    clearTimeout(agent.dueTimer);
    agent.dueTimer = undefined;
    dueAt.set(agent, due);
    if (due !== undefined) {
      agent.dueTimer = setTimeout(() => {
        agent.dueTimer = undefined;
        dueAt.delete(agent);
        pump(agent);
      }, Math.max(1, due - state.now()));
      agent.dueTimer.unref();
    }
  }

  function onGiveUp(agent: AgentRuntime, giveUp: GiveUp): void {
    const id = giveUp.directive.directiveId;
    const jd = state.directives.get(id);
    if (giveUp.reason === "exhausted") {
      // Retries spent without an ack: agent_unavailable, no further retry to it.
      settleOutcome(agent, id, new Error(`agent ${agent.agentId} did not acknowledge directive ${id} after ${config.delivery.retryCount} retries`));
      if (jd) parts.engine.endAttempt(jd, "agent_unavailable", `agent ${agent.agentId} did not acknowledge after ${config.delivery.retryCount} retries`, { exclude: undefined });
      if (agent.state !== AgentState.OFFLINE) parts.registry.markOffline(agent, `agent_unavailable: directive ${id} unacknowledged after ${config.delivery.retryCount} retries`);
    } else {
      // No progress within the lease: stop it on the agent and try again.
      agent.session?.send({ $typeName: "baton.v1.CoordinatorMessage", kind: { case: "cancel", value: { $typeName: "baton.v1.DirectiveCancel", directiveId: id, taskId: jd?.taskId ?? "", reason: "lease expired" } } }, giveUp.directive.correlationId);
      if (jd) parts.engine.endAttempt(jd, "lease_expired", `no progress from ${agent.agentId} within ${config.delivery.leaseMs} ms`, {});
    }
  }

  function handBack(agent: AgentRuntime, entries: Array<{ directive: CoordinationDirective; accepted: boolean }>, outcome: string): void {
    for (const { directive, accepted } of entries) {
      settleOutcome(agent, directive.directiveId, new Error(`handed back: ${outcome}`));
      const jd = state.directives.get(directive.directiveId);
      if (jd) parts.engine.endAttempt(jd, outcome, accepted ? `agent ${agent.agentId} was lost while running it (re-execution)` : `agent ${agent.agentId} was lost before acknowledging it`, {});
    }
  }

  function cancelDirective(directiveId: string, reason: string): void {
    const jd = state.directives.get(directiveId);
    if (!jd) return;
    state.directives.delete(directiveId);
    parts.reservations.release(directiveId);
    const agent = state.agentsById.get(jd.agentId);
    if (!agent) return;
    agent.outbox.settle(directiveId);
    settleOutcome(agent, directiveId);
    agent.session?.send({ $typeName: "baton.v1.CoordinatorMessage", kind: { case: "cancel", value: { $typeName: "baton.v1.DirectiveCancel", directiveId, taskId: jd.taskId, reason } } }, jd.directive!.correlationId);
    void record(state, { deleteDirectives: [directiveId] });
  }

  /** Sends a directive outside any task (operators, tests); it is tracked like any other. */
  function sendDirective(agentId: string, init: MessageInitShape<typeof CoordinationDirectiveSchema>): CoordinationDirective {
    const agent = state.agentsById.get(agentId);
    parts.registry.liveSession(agentId);
    if (agent!.draining) throw failedPrecondition(`agent ${agentId} is draining and takes no new work`);
    const held = agent!.outbox.size;
    if (held >= agent!.maxInFlight) throw new BatonError(Code.RESOURCE_EXHAUSTED, `agent ${agentId} holds ${held} directives, its in-flight cap`);
    const directive = create(CoordinationDirectiveSchema, { directiveId: randomUUID(), timestamp: stamp(state), ...init, targetAgent: agentId });
    directive.correlationId ||= directive.directiveId;
    assertProtocolValid(CoordinationDirectiveSchema, directive);
    agent!.outbox.add(directive, state.now());
    state.directiveTask.set(directive.directiveId, { taskId: "", agentId });
    state.directives.set(directive.directiveId, create(JournalDirectiveSchema, { directive, agentId, sessionId: agent!.sessionId, state: DeliveryState.QUEUED, taskId: "" }));
    pump(agent!);
    return directive;
  }

  /** Directives held for an agent (or all), not yet completed. */
  function pendingDirectives(agentId?: string): CoordinationDirective[] {
    return [...state.agentsById.values()].filter((a) => !agentId || a.agentId === agentId).flatMap((a) => a.outbox.list().map((e) => e.directive));
  }

  return { track, settleOutcome, pump, handBack, cancelDirective, sendDirective, pendingDirectives };
}
