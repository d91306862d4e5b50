import { CoordinationState, TaskState } from "../../gen/baton/v1/control_pb.js";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { toAgentMessage, type AgentView, type Coordinator } from "../coordinator/index.js";
import type { EventLog } from "./event-log.js";
import { topicSegment as seg } from "./topic-pattern.js";

/** Publishes the coordinator's state changes as events: task.<id>.<state>, agent.<id>.<state>, round.<id>.<state>, each id escaped by topicSegment. */
export function publishCoordinatorEvents(coordinator: Coordinator, log: EventLog): () => void {
  const onTask = (task: import("../../gen/baton/v1/control_pb.js").Task, reason: string) => {
    const correlationId = task.attempts.at(-1)?.directiveIds[0] ?? "";
    log.append({ topic: `task.${seg(task.spec!.taskId)}.${TaskState[task.state].toLowerCase()}`, correlationId, reason, kind: { case: "task", value: task } });
  };
  const onAgent = (state: string) => (agent: AgentView, reason = "") => {
    log.append({ topic: `agent.${seg(agent.agentId)}.${state}`, correlationId: agent.sessionId, reason, kind: { case: "agent", value: toAgentMessage(agent) } });
  };
  const handlers = {
    "agent.online": onAgent(AgentState[AgentState.ONLINE].toLowerCase()),
    "agent.disconnected": onAgent(AgentState[AgentState.DISCONNECTED].toLowerCase()),
    "agent.offline": onAgent(AgentState[AgentState.OFFLINE].toLowerCase()),
    "agent.draining": onAgent(AgentState[AgentState.DRAINING].toLowerCase()),
  } as const;
  const onRound = (round: import("../../gen/baton/v1/control_pb.js").CoordinationRound, reason: string) => {
    log.append({ topic: `round.${seg(round.roundId)}.${CoordinationState[round.state].toLowerCase()}`, correlationId: round.roundId, reason, kind: { case: "round", value: round } });
  };
  coordinator.on("task.updated", onTask);
  coordinator.on("round.updated", onRound);
  for (const [name, fn] of Object.entries(handlers)) coordinator.on(name as keyof typeof handlers, fn);
  return () => {
    coordinator.off("task.updated", onTask);
    coordinator.off("round.updated", onRound);
    for (const [name, fn] of Object.entries(handlers)) coordinator.off(name as keyof typeof handlers, fn);
  };
}
