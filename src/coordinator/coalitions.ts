import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { TaskState } from "../../gen/baton/v1/control_pb.js";
import { DeliveryState, JournalDirectiveSchema } from "../../gen/baton/v1/journal_pb.js";
import { delayTask, publishTask, record, stamp, type CoordinatorState } from "./coordinator-state.js";
import type { Coalitions, CoordinatorParts } from "./parts.js";
import { coalitionDirectives } from "./plan-input.js";
import type { CoalitionRuntime, TaskRuntime } from "./runtime.js";

/**
 * Coalitions, all or nothing: every member reserved or none, formed only when every member
 * accepts within the formation timeout, and one member's end dissolves the whole attempt.
 */
export function createCoalitions(state: CoordinatorState, parts: CoordinatorParts): Coalitions {
  const { config } = state;

  /** Cancels and releases every directive of the task's current attempt. */
  function dissolve(rt: TaskRuntime, reason: string): void {
    for (const other of rt.directives) parts.delivery.cancelDirective(other, reason);
    rt.directives.clear();
    if (rt.coalition) clearTimeout(rt.coalition.timer);
    rt.coalition = undefined;
  }

  /**
   * Sends form_coalition to every member: reserved all or nothing, formed only if every
   * member accepts within the formation timeout, else dissolved and retried.
   */
  async function assignCoalition(rt: TaskRuntime, members: Array<{ agentId: string; role: string; resources: Array<{ resourceId: string; amount: number }> }>, leader: string, correlationId: string): Promise<boolean> {
    const spec = rt.task.spec!;
    const coalitionId = randomUUID();
    const timeoutMs = spec.coalition?.formationTimeoutMs || config.tasks.coalitionFormationMs;
    const directives = coalitionDirectives(spec, { coalitionId, members, leader, correlationId, timeoutMs, timestamp: stamp(state) });
    const reserved: string[] = [];
    const epoch = state.epoch;
    try {
      for (const [i, d] of directives.entries()) {
        if (!members[i]!.resources.length) continue;
        await parts.reservations.reserve(d.directiveId, spec.taskId, members[i]!.agentId, members[i]!.resources);
        reserved.push(d.directiveId);
      }
    } catch (err) {
      for (const id of reserved) parts.reservations.release(id);
      delayTask(state, rt, state.now() + config.tasks.retryDelayMs);
      state.logger.info({ task_id: spec.taskId, outcome: "resource_conflict", reason: (err as Error).message }, "coalition reservation refused; replanning");
      parts.rounds.requestSchedule("resource_conflict");
      return false;
    }
    if (epoch !== state.epoch || rt.task.state !== TaskState.PENDING) {
      for (const id of reserved) parts.reservations.release(id);
      return false;
    }
    const attemptNo = parts.engine.startAttempt(rt, members.map((m) => m.agentId), directives.map((d) => d.directiveId));
    const coalition: CoalitionRuntime = { coalitionId, leader, accepted: new Set(), completed: new Map(), timer: undefined };
    rt.coalition = coalition;
    coalition.timer = setTimeout(() => {
      if (rt.coalition !== coalition || coalition.accepted.size === rt.directives.size) return;
      const missing = [...rt.directives].find((id) => !coalition.accepted.has(id));
      const jd = missing ? state.directives.get(missing) : undefined;
      if (jd) parts.engine.endAttempt(jd, "coalition_not_formed", `not every member accepted within ${timeoutMs} ms`, {});
    }, timeoutMs);
    coalition.timer.unref();
    const records = directives.map((d, i) => create(JournalDirectiveSchema, { directive: d, agentId: members[i]!.agentId, sessionId: state.agentsById.get(members[i]!.agentId)!.sessionId, state: DeliveryState.QUEUED, taskId: spec.taskId, taskAttempt: attemptNo }));
    for (const jd of records) {
      state.directives.set(jd.directive!.directiveId, jd);
      state.directiveTask.set(jd.directive!.directiveId, { taskId: spec.taskId, agentId: jd.agentId, coalition: true });
      rt.issued.add(jd.directive!.directiveId);
    }
    publishTask(state, rt.task, "assigned");
    void record(state, { tasks: [rt.task], directives: records }).then(
      () => {
        if (epoch !== state.epoch) return;
        for (const jd of records) {
          const agent = state.agentsById.get(jd.agentId)!;
          const d = jd.directive!;
          agent.breaker
            .fire(() => {
              agent.outbox.add(d, state.now());
              const outcome = parts.delivery.track(agent, d.directiveId);
              parts.delivery.pump(agent);
              return outcome;
            })
            .catch(() => {
              // A member's breaker refused: the coalition cannot form; dissolve and plan again.
              if (rt.coalition === coalition && state.directives.has(d.directiveId)) parts.engine.endAttempt(jd, "agent_unavailable", `member ${jd.agentId} refused by its breaker`, {});
            });
        }
      },
      () => {},
    );
    return true;
  }

  return { assignCoalition, dissolve };
}
