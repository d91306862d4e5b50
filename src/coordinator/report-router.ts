import { AgentStatusResponseSchema, DirectiveAckSchema, ProgressUpdateSchema, TaskCompletionSchema } from "../../gen/baton/v1/coordination_pb.js";
import type { AgentReport } from "../../gen/baton/v1/session_pb.js";
import { BatonError, Code, invalidArgument, permissionDenied } from "../errors.js";
import { logProtocolMessage, type Logger } from "../logging.js";
import { assertProtocolValid } from "../protocol/index.js";
import type { AgentSession } from "./agent-session.js";
import { logParticipant, PM, type CoordinatorState } from "./coordinator-state.js";
import type { CoordinatorParts, ReportRouter } from "./parts.js";
import type { AgentRuntime, DirectiveOwner } from "./runtime.js";

/**
 * The report router: each report from an agent's stream, checked (schema, sender, whose
 * directive it names), goes to the part it concerns: a status to the synced view, an ack
 * to delivery and the task engine, progress to the lease and the Performance Monitor, a
 * completion to the task engine, acknowledged once durable.
 */
export function createReportRouter(state: CoordinatorState, parts: CoordinatorParts): ReportRouter {
  const { config } = state;

  function checkSource(source: string, session: AgentSession, what: string): void {
    if (source !== session.agentId) throw permissionDenied(`agent ${session.agentId} may not send ${what} as ${JSON.stringify(source)}`);
  }

  function logReceived(session: AgentSession, correlationId: string, messageType: string, logger: Logger): void {
    logProtocolMessage(logger, { correlation_id: correlationId, source: session.agentId, destination: config.coordinatorId, message_type: messageType }, "received", config.log.protocolLevel);
  }

  /** The task a directive belongs to, refusing another agent's directive. */
  function ownDirective(directiveId: string, session: AgentSession, what: string): DirectiveOwner | undefined {
    const owner = state.directiveTask.get(directiveId);
    if (owner && owner.agentId !== session.agentId) {
      throw permissionDenied(`agent ${session.agentId} may not send ${what} for directive ${directiveId} of agent ${owner.agentId}`);
    }
    return owner;
  }

  function handleReport(report: AgentReport, agent: AgentRuntime, session: AgentSession, logger: Logger): void {
    const kind = report.kind;
    const now = state.now();
    switch (kind.case) {
      case "statusResponse": {
        assertProtocolValid(AgentStatusResponseSchema, kind.value);
        checkSource(kind.value.sourceAgent, session, "a status response");
        logReceived(session, session.statusCorrelation(kind.value.requestId), "agent_status_response", logger);
        // Asked for or pushed (the synced view, at most once per sync interval): either way the view is fresh.
        if (!session.resolveStatus(kind.value)) agent.pushesStatus = true;
        agent.statusAt = now;
        state.reportedUtilization.set(agent.agentId, kind.value.resourceUtilization);
        return;
      }
      case "directiveAck": {
        const ack = kind.value;
        assertProtocolValid(DirectiveAckSchema, ack);
        checkSource(ack.sourceAgent, session, "an ack");
        const owner = ownDirective(ack.directiveId, session, "an ack");
        const jd = state.directives.get(ack.directiveId);
        logReceived(session, jd?.directive?.correlationId || ack.directiveId, "directive_ack", logger);
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
        parts.delivery.settleOutcome(agent, ack.directiveId);
        state.events.emit("directive.ack", ack, result.directive);
        if (result.kind === "accepted") parts.engine.onAccepted(jd);
        else if (result.kind === "rejected") parts.engine.endAttempt(jd, "rejected", `rejected by ${agent.agentId}: ${result.reason}`, { exclude: agent.agentId });
        else parts.engine.endAttempt(jd, "deferred", `deferred by ${agent.agentId}: ${result.reason || "not now"}`, { delayMs: result.retryAfterMs });
        return;
      }
      case "progressUpdate": {
        const update = kind.value;
        assertProtocolValid(ProgressUpdateSchema, update);
        checkSource(update.sourceAgent, session, "progress");
        if (update.directiveId) ownDirective(update.directiveId, session, "progress");
        const jd = update.directiveId ? state.directives.get(update.directiveId) : undefined;
        logReceived(session, jd?.directive?.correlationId || update.eventId, "progress_update", logger);
        if (update.directiveId) agent.outbox.progress(update.directiveId, now);
        // Step 6: progress goes on to the Performance Monitor as a MetricsUpdate.
        if (state.performance) logParticipant(state, jd?.directive?.correlationId || update.eventId, config.coordinatorId, PM, "metrics_update");
        // A literal, every field set as create() would: create() costs more than the rest of a progress update's handling.
        state.performance?.recordUpdate({
          $typeName: "baton.v1.MetricsUpdate",
          eventId: update.eventId,
          timestamp: update.timestamp,
          sourceAgent: update.sourceAgent,
          directiveId: update.directiveId,
          resourceUtilization: update.metrics?.resourceUtilization ?? 0,
          completionPercentage: update.metrics?.completionPercentage ?? 0,
          custom: { ...(update.metrics?.custom ?? {}), in_flight: agent.outbox.inFlight },
        });
        state.events.emit("directive.progress", update, (update.directiveId && state.directiveTask.get(update.directiveId)?.taskId) || "");
        return;
      }
      case "taskCompletion": {
        const completion = kind.value;
        assertProtocolValid(TaskCompletionSchema, completion);
        checkSource(completion.sourceAgent, session, "a completion");
        const owner = ownDirective(completion.directiveId, session, "a completion");
        const jd = state.directives.get(completion.directiveId);
        const correlationId = jd?.directive?.correlationId || completion.directiveId;
        logReceived(session, correlationId, "task_completion", logger);
        void parts.engine.onCompletion(completion, owner, agent).then(
          () => {
            // Acknowledged only once durable: the agent keeps the completion until then.
            session.send(
              { $typeName: "baton.v1.CoordinatorMessage", kind: { case: "completionAck", value: { $typeName: "baton.v1.CompletionAck", eventId: completion.eventId, directiveId: completion.directiveId } } },
              correlationId,
            );
          },
          (err: unknown) => {
            // A journal that cannot be written is expected to pass (the agent resends); anything else is a fault of baton's own.
            if (BatonError.from(err).code === Code.UNAVAILABLE) logger.warn({ err: (err as Error).message, directive_id: completion.directiveId }, "completion not recorded; the agent will resend it");
            else logger.error({ err, directive_id: completion.directiveId }, "completion failed; the agent will resend it");
          },
        );
        return;
      }
      default:
        throw invalidArgument("AgentReport: kind is required");
    }
  }
  return { handleReport };
}
