import { Action } from "../../gen/baton/v1/common_pb.js";
import type { Task } from "../../gen/baton/v1/control_pb.js";
import type { CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import type { ResourceMove } from "../planner/index.js";
import type { CoordinatorState } from "./coordinator-state.js";
import type { CoordinatorParts, Reservations } from "./parts.js";

/**
 * Reservations on the Resource Manager, each named by the directive that holds it: made
 * before a directive goes out (a refusal is resource_conflict: replan), released when its
 * attempt ends, restored after a restart; and adjust_resources, a resource moved between agents.
 */
export function createReservations(state: CoordinatorState, parts: CoordinatorParts): Reservations {
  /** Reserves what a planned directive needs on its agent; refused (it throws) when the plan saw a state that has changed. */
  function reserve(reservationId: string, holder: string, agentId: string, resources: Array<{ resourceId: string; amount: number }>) {
    return state.inventory.reserve({ reservationId, holder, agentId, requests: resources.map((r) => ({ $typeName: "baton.v1.ResourceRequest" as const, resourceId: r.resourceId, kind: "", amount: r.amount })) });
  }

  /**
   * adjust_resources: moves a free resource from an idle agent to an overloaded one. The
   * Resource Manager's inventory changes hands, and each agent gets a directive saying so.
   */
  async function adjustResources(move: ResourceMove, roundId: string): Promise<void> {
    const from = state.agentsById.get(move.from);
    const to = state.agentsById.get(move.to);
    const resource = from?.hello.resources.find((r) => r.resourceId === move.resourceId);
    if (!from?.session || !to?.session || !resource) return;
    try {
      from.hello.resources = from.hello.resources.filter((r) => r.resourceId !== move.resourceId);
      await state.inventory.register(from.agentId, from.hello.resources);
      to.hello.resources = [...to.hello.resources, resource];
      await state.inventory.register(to.agentId, to.hello.resources);
      const reason = `for task ${move.forTask}: ${move.from} is idle, ${move.to} is overloaded`;
      parts.delivery.sendDirective(from.agentId, { action: Action.ADJUST_RESOURCES, correlationId: roundId, parameters: { kind: { case: "adjustResources", value: { revoke: [move.resourceId], reason } } } });
      parts.delivery.sendDirective(to.agentId, { action: Action.ADJUST_RESOURCES, correlationId: roundId, parameters: { kind: { case: "adjustResources", value: { grant: [{ resourceId: move.resourceId, kind: move.kind, amount: move.amount }], reason } } } });
      state.logger.info({ ...move, round_id: roundId }, "adjust_resources");
      parts.rounds.requestSchedule("resources_changed");
    } catch (err) {
      state.logger.warn({ ...move, err: (err as Error).message }, "adjust_resources failed");
    }
  }

  /** Reserves a directive's resources again (after a restart), by the ids it names and the amounts its task asked. */
  async function reserveFor(task: Task, directive: CoordinationDirective, agentId: string): Promise<void> {
    const params = directive.parameters?.kind.case === "assignTask" ? directive.parameters.kind.value : undefined;
    if (!params?.resources.length) return;
    try {
      await state.inventory.reserve({
        reservationId: directive.directiveId,
        holder: task.spec!.taskId,
        agentId,
        requests: params.resources.map((resourceId, i) => ({ $typeName: "baton.v1.ResourceRequest", resourceId, kind: "", amount: task.spec!.resources[i]?.amount ?? 0 })),
      });
    } catch (err) {
      state.logger.warn({ directive_id: directive.directiveId, err: (err as Error).message }, "could not restore a reservation");
    }
  }

  /** Releases a directive's reservations; a failure is logged (the RM's breaker decides retries). */
  function release(reservationId: string): void {
    state.inventory.release(reservationId).then(
      // Freed capacity is a state change: a task that found no room may fit now (with a remote RM this lands after the round that needed it).
      (released) => released && parts.rounds.requestSchedule("resources_released"),
      (err: unknown) => state.logger.warn({ reservation_id: reservationId, err: (err as Error).message }, "release failed"),
    );
  }

  return { reserve, reserveFor, release, adjustResources };
}
