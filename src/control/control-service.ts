import { create } from "@bufbuild/protobuf";
import { timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AgentSchema, type Agent, type Control } from "../../gen/baton/v1/control_pb.js";
import type { AgentEntry, Coordinator } from "../coordinator/index.js";
import { notFound } from "../errors.js";
import type { ServiceImpl } from "../rpc/index.js";

/** An agent entry as the Control API shows it. */
export function toAgentMessage(entry: AgentEntry, inFlight: number): Agent {
  return create(AgentSchema, {
    agentId: entry.agentId,
    state: entry.state,
    capabilities: entry.hello.capabilities,
    resources: entry.hello.resources,
    labels: entry.hello.labels,
    maxInFlight: entry.maxInFlight,
    inFlight,
    sessionId: entry.session?.sessionId ?? "",
    connectedAt: timestampFromDate(entry.connectedAt),
    lastSeen: timestampFromMs(entry.lastSeen),
    breaker: "closed",
    identity: entry.identity,
    peer: entry.peer,
  });
}

/** The Control service's agent methods over the coordinator. Task methods come with the task engine. */
export function createControlService(coordinator: Coordinator): ServiceImpl<typeof Control> {
  const agent = (id: string): Agent => {
    const entry = coordinator.registry.get(id);
    if (!entry) throw notFound(`no agent ${JSON.stringify(id)} is known`);
    return toAgentMessage(entry, coordinator.pendingDirectives(id).length);
  };
  return {
    async listAgents(req) {
      const wanted = new Set(req.states);
      const agents = coordinator.registry
        .list()
        .filter((e) => wanted.size === 0 || wanted.has(e.state))
        .map((e) => toAgentMessage(e, coordinator.pendingDirectives(e.agentId).length));
      return { $typeName: "baton.v1.ListAgentsResponse", agents };
    },
    async getAgent(req) {
      return { $typeName: "baton.v1.GetAgentResponse", agent: agent(req.agentId) };
    },
    async drainAgent(req) {
      coordinator.drain(req.agentId, req.reason || "drained by an operator", req.reconnectTo);
      return { $typeName: "baton.v1.DrainAgentResponse", agent: agent(req.agentId) };
    },
    async getAgentStatus(req, ctx) {
      const { response, roundTripMs } = await coordinator.requestStatus(req.agentId, {
        ...(req.timeoutMs ? { timeoutMs: req.timeoutMs } : {}),
        signal: ctx.signal,
      });
      return { $typeName: "baton.v1.GetAgentStatusResponse", status: response, roundTripMs };
    },
  };
}
