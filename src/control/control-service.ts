import { AgentSchema, TaskSchema, type Agent, type Control, type Task } from "../../gen/baton/v1/control_pb.js";
import { isTerminal, toAgentMessage, type Coordinator } from "../coordinator/index.js";
import { invalidArgument, notFound, quote, resourceExhausted } from "../errors.js";
import type { EventLog, TaskProgressView } from "../events/index.js";
import { countWithin, elementBytes, messageBudget } from "../protocol/index.js";
import { DEFAULT_TRANSPORT_LIMITS, type HandlerContext, type ServiceImpl } from "../rpc/index.js";

function submitterOf(ctx: HandlerContext): string {
  return (ctx.identity as { uri?: string } | undefined)?.uri ?? "";
}

/** How the Control service sizes its answers. */
export interface ControlServiceOptions {
  /** Most bytes of tasks in a ListTasks page, or of agents in ListAgents; default messageBudget of the default transport limits. */
  answerBudgetBytes?: number;
  /** The latest progress of running tasks, shown on the tasks answered (Task.progress). */
  progress?: TaskProgressView;
}

/** The Control service over the coordinator (got per call: it exists once the server has started) and the event log. */
export function createControlService(getCoordinator: () => Coordinator, events: EventLog, options: ControlServiceOptions = {}): ServiceImpl<typeof Control> {
  const budget = options.answerBudgetBytes ?? messageBudget(DEFAULT_TRANSPORT_LIMITS);
  // A copy: the coordinator's own Task (journaled as it is) never carries progress.
  const withProgress = (task: Task): Task => {
    const progress = isTerminal(task.state) ? undefined : options.progress?.latest(task.spec!.taskId);
    return progress ? { ...task, progress } : task;
  };
  const agent = (id: string): Agent => {
    const coordinator = getCoordinator();
    const rt = coordinator.agent(id);
    if (!rt) throw notFound(`no agent ${quote(id)} is known`);
    return toAgentMessage(rt);
  };
  return {
    async submitTask(req, ctx) {
      const coordinator = getCoordinator();
      const { task, created } = await coordinator.submitTask(req.task!, submitterOf(ctx));
      return { $typeName: "baton.v1.SubmitTaskResponse", task, created };
    },
    async submitTasks(req, ctx) {
      const coordinator = getCoordinator();
      const results = await coordinator.submitTasks(req.tasks, submitterOf(ctx));
      return { $typeName: "baton.v1.SubmitTasksResponse", results: results.map((r) => ({ $typeName: "baton.v1.SubmitTaskResult" as const, ...r })) };
    },
    async getTask(req) {
      const coordinator = getCoordinator();
      // Reads wait for pending writes: an answer never shows a state the journal may not keep.
      await coordinator.durable();
      return { $typeName: "baton.v1.GetTaskResponse", task: withProgress(coordinator.getTask(req.taskId)) };
    },
    async listTasks(req) {
      const coordinator = getCoordinator();
      // A bad request is INVALID_ARGUMENT whatever the state, so it is checked before waiting on the journal.
      if (req.pageSize > 1000) throw invalidArgument(`page_size must be at most 1000, got ${req.pageSize}`);
      await coordinator.durable();
      const page = coordinator.listTasks(req.states, req.pageSize || 100, req.pageToken);
      // A page also stops before it would outgrow a message; the next page starts after its last task.
      const shown = page.tasks.map(withProgress);
      const fit = countWithin(shown, (t) => elementBytes(TaskSchema, t), budget);
      const tasks = shown.slice(0, fit);
      const next = fit < shown.length ? coordinator.pageToken(tasks.at(-1)!.spec!.taskId) : page.next;
      return { $typeName: "baton.v1.ListTasksResponse", tasks, nextPageToken: next };
    },
    async explainTask(req) {
      if (!req.taskId) throw invalidArgument("task_id is required");
      const coordinator = getCoordinator();
      await coordinator.durable();
      const explained = await coordinator.explainTask(req.taskId);
      if (explained.task) explained.task = withProgress(explained.task);
      return explained;
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
      // ListAgents has no pages (yet): an answer that would outgrow a message is refused
      // plainly rather than cut short. Hello's limits keep each agent small.
      const bytes = agents.reduce((sum, a) => sum + elementBytes(AgentSchema, a), 0);
      if (bytes > budget) throw resourceExhausted(`ListAgents: the ${agents.length} agents take ${bytes} bytes, over the ${budget} bytes one answer holds; narrow it with states, or read agents one at a time with GetAgent`);
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
    async undrainAgent(req) {
      const coordinator = getCoordinator();
      coordinator.undrain(req.agentId);
      return { $typeName: "baton.v1.UndrainAgentResponse", agent: agent(req.agentId) };
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
