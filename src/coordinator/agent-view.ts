import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AgentSchema, type Agent } from "../../gen/baton/v1/control_pb.js";
import type { AgentView } from "./runtime.js";

/** An agent as the Control API shows it. */
export function toAgentMessage(agent: AgentView): Agent {
  return create(AgentSchema, {
    agentId: agent.agentId,
    state: agent.state,
    capabilities: agent.hello.capabilities,
    resources: agent.hello.resources,
    labels: agent.hello.labels,
    maxInFlight: agent.maxInFlight,
    inFlight: agent.outbox.inFlight,
    sessionId: agent.session?.sessionId ?? "",
    connectedAt: timestampFromDate(agent.connectedAt),
    lastSeen: timestampFromMs(agent.lastSeen),
    breaker: agent.breaker.state,
    identity: agent.identity,
    peer: agent.peer,
    // Whole milliseconds: Duration.nanos must be an integer.
    ...(agent.clockSkewMs !== undefined ? { clockSkew: durationFromMs(Math.round(agent.clockSkewMs)) } : {}),
    stateReason: agent.stateReason,
  });
}
