import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { TaskState } from "../../gen/baton/v1/control_pb.js";
import type { Coordinator } from "../coordinator/index.js";
import { tallyCounter } from "./tally-counter.js";

/** The coordinator's Prometheus metrics, with the spec's names where it names them. */
export interface CoordinatorMetrics {
  registry: Registry;
  /** Stops listening to the coordinator. */
  detach(): void;
}

// Directives whose write time is kept for the ack histogram at most (about 8 MB).
const MAX_UNACKED_TIMES = 100_000;

/** Registers the metrics and feeds them from the coordinator's events. */
export function createCoordinatorMetrics(coordinator: Coordinator, coordinatorId: string, registry: Registry = new Registry()): CoordinatorMetrics {
  collectDefaultMetrics({ register: registry });
  // Counted per task or per directive: tallied, handed to prom-client at scrape.
  const taskOutcome = tallyCounter({
    name: "baton_task_attempt_outcomes_total",
    help: "Ends of task attempts, by outcome (succeeded, directive_failed, resource_conflict, agent_unavailable, lease_expired, rejected, deferred, cancelled)",
    labelNames: ["outcome"],
    registry,
  });
  const deadLetters = new Counter({ name: "baton_tasks_dead_lettered_total", help: "Tasks dead-lettered after their attempts were spent", registers: [registry] });
  const forgotten = new Counter({ name: "baton_tasks_forgotten_total", help: "Ended tasks forgotten, in memory and in the journal (tasks.keepEnded, tasks.keepEndedMs)", registers: [registry] });
  const agentUnavailable = new Counter({ name: "baton_agent_unavailable_total", help: "Agents marked offline (agent_unavailable)", labelNames: ["agent"], registers: [registry] });
  const clockSkewRefusals = new Counter({
    name: "baton_clock_skew_refusals_total",
    help: "Agent sessions and signed batches refused because the agent's clock is beyond the replay window (other signature and replay refusals are not counted here)",
    registers: [registry],
  });
  const directiveSent = tallyCounter({ name: "baton_directives_sent_total", help: "Directive writes to agent streams, resends included", labelNames: ["action"], registry });
  const ackOf = tallyCounter({ name: "baton_directive_acks_total", help: "Directive acks, by outcome", labelNames: ["outcome"], registry });
  const ACK_OUTCOMES = ["unspecified", "accepted", "rejected", "not_now"];
  const completionTime = new Histogram({
    name: "directive_completion_time",
    help: "Seconds from a directive's issue to its completion (the spec's directive_completion_time)",
    labelNames: ["directive_type"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  const ackTime = new Histogram({
    name: "baton_directive_ack_seconds",
    help: "Seconds from a directive's write to the agent's stream to its ack (dispatch -> ack), the last write's when it was resent",
    buckets: [0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [registry],
  });
  // Write times of directives not yet acked; bounded, since a lost agent's never are.
  const sentAt = new Map<string, number>();
  let succeeded = 0;
  let failed = 0;
  new Gauge({
    name: "coordination_success_rate",
    help: "Share of finished tasks that succeeded (the spec's coordination_success_rate)",
    labelNames: ["coordinator_id"],
    registers: [registry],
    // Worked out when scraped: set at every task's end, it cost a label hash a task.
    collect() {
      if (succeeded + failed > 0) this.set({ coordinator_id: coordinatorId }, succeeded / (succeeded + failed));
    },
  });
  // Gauges of current state are read at scrape time.
  new Gauge({
    name: "baton_agents",
    help: "Agents known, by state",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      this.reset();
      for (const a of coordinator.agents()) this.inc({ state: AgentState[a.state].toLowerCase() });
    },
  });
  new Gauge({
    name: "baton_tasks",
    help: "Tasks held, by state (ended ones until tasks.keepEnded or tasks.keepEndedMs forgets them)",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [state, n] of coordinator.taskCounts()) this.set({ state: TaskState[state].toLowerCase() }, n);
    },
  });
  const onTask = (task: import("../../gen/baton/v1/control_pb.js").Task, reason: string) => {
    const last = task.attempts.at(-1);
    if (last?.endedAt && last.outcome && (reason === last.outcome || reason === "succeeded" || reason === "cancelled")) taskOutcome({ outcome: last.outcome }).inc();
    if (task.state === TaskState.SUCCEEDED && reason === "succeeded") succeeded++;
    if (task.state === TaskState.DEAD_LETTERED) {
      deadLetters.inc();
      failed++;
    }
  };
  const onOffline = (agent: { agentId: string }) => agentUnavailable.inc({ agent: agent.agentId });
  const onClockSkew = () => clockSkewRefusals.inc();
  const onSent = (d: import("../../gen/baton/v1/coordination_pb.js").CoordinationDirective) => {
    directiveSent({ action: d.parameters?.kind.case ?? "unknown" }).inc();
    // The oldest goes when full: directives handed back or cancelled before an ack are never acked.
    if (sentAt.size >= MAX_UNACKED_TIMES && !sentAt.has(d.directiveId)) sentAt.delete(sentAt.keys().next().value!);
    sentAt.set(d.directiveId, performance.now());
  };
  const onAck = (ack: import("../../gen/baton/v1/coordination_pb.js").DirectiveAck) => {
    ackOf({ outcome: ACK_OUTCOMES[ack.outcome] ?? "unknown" }).inc();
    const at = sentAt.get(ack.directiveId);
    if (at === undefined) return;
    sentAt.delete(ack.directiveId);
    ackTime.observe((performance.now() - at) / 1000);
  };
  const onCompleted = (_c: unknown, d: import("../../gen/baton/v1/coordination_pb.js").CoordinationDirective | undefined) => {
    if (d) sentAt.delete(d.directiveId);
    if (d?.timestamp) completionTime.observe({ directive_type: d.parameters?.kind.case ?? "unknown" }, (Date.now() - Number(d.timestamp.seconds) * 1000 - d.timestamp.nanos / 1e6) / 1000);
  };
  const onForgotten = (n: number) => forgotten.inc(n);
  coordinator.on("task.updated", onTask);
  coordinator.on("tasks.forgotten", onForgotten);
  coordinator.on("agent.offline", onOffline);
  coordinator.on("agent.clock_skew_refused", onClockSkew);
  coordinator.on("directive.sent", onSent);
  coordinator.on("directive.ack", onAck);
  coordinator.on("directive.completed", onCompleted);
  return {
    registry,
    detach() {
      coordinator.off("task.updated", onTask);
      coordinator.off("tasks.forgotten", onForgotten);
      coordinator.off("agent.offline", onOffline);
      coordinator.off("agent.clock_skew_refused", onClockSkew);
      coordinator.off("directive.sent", onSent);
      coordinator.off("directive.ack", onAck);
      coordinator.off("directive.completed", onCompleted);
    },
  };
}

/** The gRPC listener's metrics: connections it closed before grpc-js served them, by reason, and those open at scrape time. */
export function createConnectionMetrics(registry: Registry, openConnections: () => number): { refused(reason: string): void } {
  const refused = new Counter({
    name: "baton_connections_refused_total",
    help: "Connections the listener closed, by reason (max_connections, max_connections_per_address, tls_handshake_timeout, tls_handshake_failed, preface_timeout, bad_preface, no_credentials, accept_error)",
    labelNames: ["reason"],
    registers: [registry],
  });
  new Gauge({
    name: "baton_connections_open",
    help: "TCP connections open on the gRPC port, in their handshake or served",
    registers: [registry],
    collect() {
      this.set(openConnections());
    },
  });
  return { refused: (reason) => refused.inc({ reason }) };
}
