import type { Agent, Control } from "../../gen/baton/v1/control_pb.js";
import { toAgentMessage, type Coordinator } from "../coordinator/index.js";
import { invalidArgument, notFound } from "../errors.js";
import type { EventLog } from "../events/index.js";
import type { HandlerContext, ServiceImpl } from "../rpc/index.js";

function submitterOf(ctx: HandlerContext): string {
  return (ctx.identity as { uri?: string } | undefined)?.uri ?? "";
}

/** The Control service over the coordinator (got per call: it exists once the server has started) and the event log. */
export function createControlService(getCoordinator: () => Coordinator, events: EventLog): ServiceImpl<typeof Control> {
  const agent = (id: string): Agent => {
    const coordinator = getCoordinator();
    const rt = coordinator.agent(id);
    if (!rt) throw notFound(`no agent ${JSON.stringify(id)} is known`);
    return toAgentMessage(rt);
  };
  return {
    async submitTask(req, ctx) {
      const coordinator = getCoordinator();
      const { task, created } = await coordinator.submitTask(req.task!, submitterOf(ctx));
      return { $typeName: "baton.v1.SubmitTaskResponse", task, created };
    },
    async getTask(req) {
      const coordinator = getCoordinator();
      // Reads wait for pending writes: an answer never shows a state the journal may not keep.
      await coordinator.durable();
      return { $typeName: "baton.v1.GetTaskResponse", task: coordinator.getTask(req.taskId) };
    },
    async listTasks(req) {
      const coordinator = getCoordinator();
      await coordinator.durable();
      if (req.pageSize > 1000) throw invalidArgument(`page_size must be at most 1000, got ${req.pageSize}`);
      const { tasks, next } = coordinator.listTasks(req.states, req.pageSize || 100, req.pageToken);
      return { $typeName: "baton.v1.ListTasksResponse", tasks, nextPageToken: next };
    },
    async cancelTask(req) {
      const coordinator = getCoordinator();
      return { $typeName: "baton.v1.CancelTaskResponse", task: await coordinator.cancelTask(req.taskId, req.reason) };
    },
    async resubmitTask(req) {
      const coordinator = getCoordinator();
      return { $typeName: "baton.v1.ResubmitTaskResponse", task: await coordinator.resubmitTask(req.taskId) };
    },
    async listAgents(req) {
      const coordinator = getCoordinator();
      await coordinator.durable();
      const wanted = new Set(req.states);
      const agents = coordinator.agents().filter((a) => wanted.size === 0 || wanted.has(a.state)).map(toAgentMessage);
      return { $typeName: "baton.v1.ListAgentsResponse", agents };
    },
    async getAgent(req) {
      const coordinator = getCoordinator();
      await coordinator.durable();
      return { $typeName: "baton.v1.GetAgentResponse", agent: agent(req.agentId) };
    },
    async drainAgent(req) {
      const coordinator = getCoordinator();
      coordinator.drain(req.agentId, req.reason || "drained by an operator", req.reconnectTo);
      return { $typeName: "baton.v1.DrainAgentResponse", agent: agent(req.agentId) };
    },
    async getCoordination() {
      const coordinator = getCoordinator();
      const { rounds, recent } = coordinator.coordination();
      return { $typeName: "baton.v1.GetCoordinationResponse", coordinatorId: coordinator.id, rounds, recent };
    },
    async *watchEvents(req, ctx) {
      for await (const event of events.watch(req.topics, req.afterCursor, ctx.signal)) {
        yield { $typeName: "baton.v1.WatchEventsResponse", event };
      }
    },
    async getAgentStatus(req, ctx) {
      const coordinator = getCoordinator();
      const { response, roundTripMs } = await coordinator.requestStatus(req.agentId, {
        ...(req.timeoutMs ? { timeoutMs: req.timeoutMs } : {}),
        signal: ctx.signal,
      });
      return { $typeName: "baton.v1.GetAgentStatusResponse", status: response, roundTripMs };
    },
  };
}
