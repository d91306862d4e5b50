import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { CoordinationState, type CoordinationRound } from "../../gen/baton/v1/control_pb.js";
import type { CoordinationDirective, DirectiveAck, ProgressUpdate } from "../../gen/baton/v1/coordination_pb.js";
import type { Coordinator } from "../coordinator/index.js";
import { tallyCounter, type Tally } from "./tally-counter.js";

const msOf = (t: { seconds: bigint; nanos: number } | undefined) => (t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : undefined);
const stateName = (s: CoordinationState) => CoordinationState[s].toLowerCase();

/**
 * What operators watch beside the coordinator's counters: the spec's message_latency, each
 * agent's breaker, rounds by state (and how long the oldest has not moved), key rotations.
 * Gauges of current state are read at scrape time; the rest follow the coordinator's events.
 */
export function createOperationsMetrics(coordinator: Coordinator, coordinatorId: string, registry: Registry): { detach(): void } {
  const latency = new Histogram({
    name: "message_latency",
    help: "Seconds a protocol message took from its timestamp to its arrival (the spec's message_latency): a directive from its issue to the agent's ack (source the coordinator), an agent's progress from its send to the coordinator (the agent's clock)",
    labelNames: ["source", "destination"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new Gauge({
    name: "baton_agent_breaker_state",
    help: "Each agent's circuit breaker: 1 for its current state (closed, open, half_open), 0 for the others",
    labelNames: ["agent", "state"],
    registers: [registry],
    collect() {
      this.reset();
      for (const a of coordinator.agents()) for (const s of ["closed", "open", "half_open"] as const) this.set({ agent: a.agentId, state: s }, a.breaker.state === s ? 1 : 0);
    },
  });
  new Gauge({
    name: "baton_coordination_rounds",
    help: "Coordination rounds under way, by protocol state (coordinating, executing, monitoring, error)",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of [CoordinationState.COORDINATING, CoordinationState.EXECUTING, CoordinationState.MONITORING, CoordinationState.ERROR]) this.set({ state: stateName(s) }, 0);
      for (const r of coordinator.coordination().rounds) this.inc({ state: stateName(r.state) });
    },
  });
  new Gauge({
    name: "baton_coordination_round_idle_seconds",
    help: "Seconds since the round under way that changed state longest ago last did (0 with none): a round stalled in coordinating or monitoring shows here",
    registers: [registry],
    collect() {
      const now = Date.now();
      let oldest = now;
      for (const r of coordinator.coordination().rounds) oldest = Math.min(oldest, msOf(r.updatedAt) ?? now);
      this.set((now - oldest) / 1000);
    },
  });
  // Five a round: tallied per state, handed over at scrape.
  const transition = tallyCounter({ name: "baton_coordination_round_transitions_total", help: "Coordination rounds entering each protocol state (idle: a round finished)", labelNames: ["state"], registry });
  const transitions = new Map<CoordinationState, Tally>();
  const rotations = new Counter({ name: "baton_key_rotations_total", help: "Message key rotations of agent sessions (security.keyRotationMs)", registers: [registry] });

  const onRound = (round: CoordinationRound) => {
    let t = transitions.get(round.state);
    if (!t) transitions.set(round.state, (t = transition({ state: stateName(round.state) })));
    t.inc();
  };
  const onAck = (_ack: DirectiveAck, directive: CoordinationDirective) => {
    const issued = msOf(directive.timestamp);
    if (issued !== undefined) latency.observe({ source: coordinatorId, destination: directive.targetAgent }, Math.max(0, Date.now() - issued) / 1000);
  };
  const onProgress = (update: ProgressUpdate) => {
    const sentAt = msOf(update.timestamp);
    if (sentAt !== undefined) latency.observe({ source: update.sourceAgent, destination: coordinatorId }, Math.max(0, Date.now() - sentAt) / 1000);
  };
  const onRotated = () => rotations.inc();
  coordinator.on("round.updated", onRound);
  coordinator.on("directive.ack", onAck);
  coordinator.on("directive.progress", onProgress);
  coordinator.on("session.key_rotated", onRotated);
  return {
    detach() {
      coordinator.off("round.updated", onRound);
      coordinator.off("directive.ack", onAck);
      coordinator.off("directive.progress", onProgress);
      coordinator.off("session.key_rotated", onRotated);
    },
  };
}
