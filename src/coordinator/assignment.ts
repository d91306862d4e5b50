import { create } from "@bufbuild/protobuf";
import { TaskState } from "../../gen/baton/v1/control_pb.js";
import { DeliveryState, JournalDirectiveSchema } from "../../gen/baton/v1/journal_pb.js";
import { delayTask, publishTask, record, stamp, type CoordinatorState } from "./coordinator-state.js";
import type { Assignments, CoordinatorParts } from "./parts.js";
import { directiveFor } from "./plan-input.js";
import type { AgentRuntime, TaskRuntime } from "./runtime.js";

/**
 * Step 5 for a task one agent runs: its resources reserved, its attempt started, its
 * directive journaled before any stream has it, then handed to the agent's breaker and
 * outbox. A breaker that refuses takes the attempt back at no cost to the task.
 */
export function createAssignments(state: CoordinatorState, parts: CoordinatorParts): Assignments {
  const { config } = state;

  async function assign(rt: TaskRuntime, agent: AgentRuntime, resources: Array<{ resourceId: string; amount: number }>, correlationId: string): Promise<boolean> {
    const directive = directiveFor(rt.task, agent.agentId, correlationId, resources.map((r) => r.resourceId), stamp(state));
    const id = directive.directiveId;
    const epoch = state.epoch;
    try {
      if (resources.length) await parts.reservations.reserve(id, rt.task.spec!.taskId, agent.agentId, resources);
    } catch (err) {
      // resource_conflict: the plan saw a state that changed; replan shortly.
      delayTask(state, rt, state.now() + config.tasks.retryDelayMs);
      state.logger.info({ task_id: rt.task.spec!.taskId, outcome: "resource_conflict", reason: (err as Error).message }, "reservation refused; replanning");
      parts.rounds.requestSchedule("resource_conflict");
      return false;
    }
    // The journal was reloaded, or the task was cancelled, while the reservation was out.
    if (epoch !== state.epoch || rt.task.state !== TaskState.PENDING) {
      if (resources.length) parts.reservations.release(id);
      return false;
    }
    const attemptNo = parts.engine.startAttempt(rt, [agent.agentId], [id]);
    const jd = create(JournalDirectiveSchema, { directive, agentId: agent.agentId, sessionId: agent.sessionId, state: DeliveryState.QUEUED, taskId: rt.task.spec!.taskId, taskAttempt: attemptNo });
    state.directives.set(id, jd);
    state.directiveTask.set(id, { taskId: rt.task.spec!.taskId, agentId: agent.agentId });
    rt.issued.add(id);
    // The outbox stamps the sequence; the journal gets the directive before any stream does.
    let added = false;
    agent.breaker
      .fire(() => {
        added = true;
        // Published only once the breaker lets it through: a refused delivery is taken back unseen.
        // Its sequence is stamped now (the record carries it) but it is held until the record is durable.
        agent.outbox.add(directive, state.now(), { held: true });
        const outcome = parts.delivery.track(agent, id);
        const written = record(state, { tasks: [rt.task], directives: [jd] });
        publishTask(state, rt.task, "assigned", written);
        written.then(
          () => {
            if (epoch !== state.epoch) return;
            agent.outbox.release(id, state.now());
            parts.delivery.pump(agent);
          },
          () => {},
        );
        return outcome;
      })
      .catch((err: unknown) => {
        if (!added && state.directives.has(id)) {
          // The breaker refused it (open, or its one probe is out): plan it elsewhere at no cost.
          state.directives.delete(id);
          state.directiveTask.delete(id);
          rt.issued.delete(id);
          parts.reservations.release(id);
          parts.engine.undoAttempt(rt);
          state.logger.debug({ task_id: rt.task.spec!.taskId, agent_id: agent.agentId, err: (err as Error).message }, "breaker refused a delivery");
          parts.book.roundTaskEnded(rt.task.spec!.taskId, false, "assign_task", 0);
          parts.rounds.requestSchedule("breaker_refused");
        }
      });
    return true;
  }

  return { assign };
}
