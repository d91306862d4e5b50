import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { CoordinationRoundSchema, CoordinationState, TaskState, type CoordinationRound } from "../../gen/baton/v1/control_pb.js";
import { PerformanceReportSchema } from "../../gen/baton/v1/performance_monitor_pb.js";
import { logParticipant, PM, stamp, type CoordinatorState } from "./coordinator-state.js";
import type { CoordinatorParts, RoundBook } from "./parts.js";
import { nextState, type RoundTrigger } from "./round-state.js";
import type { RoundRuntime } from "./runtime.js";

/**
 * The round book: each round's state, moved only by the spec's table (round-state.ts), the
 * tasks it still monitors and its figures; a finished round is kept among the recent ones
 * and reported to the Performance Monitor (step 7).
 */
export function createRoundBook(state: CoordinatorState, parts: CoordinatorParts): RoundBook & { coordination(): { rounds: CoordinationRound[]; recent: CoordinationRound[] } } {
  const { config } = state;

  function startRound(trigger: string): RoundRuntime {
    const round = create(CoordinationRoundSchema, { roundId: randomUUID(), state: CoordinationState.IDLE, trigger, startedAt: stamp(state), updatedAt: stamp(state) });
    const rr: RoundRuntime = { round, startedAt: state.now(), open: new Set(), replan: new Set(), planningNow: false, succeeded: 0, failed: 0, directives: 0, completionMs: new Map() };
    state.rounds.set(round.roundId, rr);
    moveRound(rr, "system_state_change", trigger);
    return rr;
  }

  function moveRound(rr: RoundRuntime, trigger: RoundTrigger, reason: string): void {
    rr.round.state = nextState(rr.round.state, trigger);
    rr.round.updatedAt = stamp(state);
    state.logger.debug({ round_id: rr.round.roundId, state: CoordinationState[rr.round.state], trigger, reason }, "round");
    state.events.emit("round.updated", rr.round, reason);
  }

  /**
   * A round task's attempt ended. A failure that will be retried keeps the task in its
   * round (adjustment_needed: the round plans it again); otherwise the task leaves the
   * round, which completes when none is left.
   */
  function roundTaskEnded(taskId: string, ok: boolean, action: string, ms: number): void {
    const roundId = state.taskRound.get(taskId);
    if (!roundId) return;
    const rr = state.rounds.get(roundId);
    if (!rr) {
      state.taskRound.delete(taskId);
      return;
    }
    const list = rr.completionMs.get(action) ?? [];
    list.push(ms);
    rr.completionMs.set(action, list);
    if (!ok && state.tasks.get(taskId)?.task.state === TaskState.PENDING && rr.open.has(taskId)) {
      rr.replan.add(taskId);
      state.replanRounds.add(rr);
      if (rr.round.state === CoordinationState.MONITORING) moveRound(rr, "adjustment_needed", `task ${taskId} is to be planned again`);
      parts.rounds.requestSchedule("adjustment_needed");
      return;
    }
    state.taskRound.delete(taskId);
    rr.replan.delete(taskId);
    if (!rr.open.delete(taskId)) return;
    if (ok) rr.succeeded++;
    else rr.failed++;
    if (rr.open.size > 0 || rr.planningNow) return;
    if (rr.round.state === CoordinationState.MONITORING) {
      moveRound(rr, "completion", `${rr.succeeded} succeeded, ${rr.failed} failed`);
      finishRound(rr, rr.failed === 0);
    } else if (rr.round.state === CoordinationState.COORDINATING) {
      // Its last task ended while it waited to re-plan: nothing is left to coordinate.
      moveRound(rr, "coordination_failure", `${rr.failed} of its tasks failed`);
      moveRound(rr, "recovery_complete", "no task left");
      finishRound(rr, false);
    }
  }

  function finishRound(rr: RoundRuntime, succeeded: boolean): void {
    state.rounds.delete(rr.round.roundId);
    state.recentRounds.unshift(rr.round);
    if (state.recentRounds.length > 50) state.recentRounds.pop();
    // Step 7: the PerformanceReport.
    if (state.performance) logParticipant(state, rr.round.roundId, config.coordinatorId, PM, "performance_report");
    const directiveCompletionMs: Record<string, number> = {};
    for (const [action, list] of rr.completionMs) directiveCompletionMs[action] = list.reduce((a, b) => a + b, 0) / list.length;
    state.performance?.recordReport(
      create(PerformanceReportSchema, {
        reportId: randomUUID(),
        timestamp: stamp(state),
        coordinatorId: config.coordinatorId,
        roundId: rr.round.roundId,
        succeeded,
        duration: durationFromMs(Math.max(0, Math.round(state.now() - rr.startedAt))),
        directives: rr.directives,
        tasksCompleted: rr.succeeded,
        tasksFailed: rr.failed,
        agents: rr.round.agentIds,
        directiveCompletionMs,
      }),
    );
  }

  /** Rounds under way and the most recent finished ones. */
  function coordination(): { rounds: CoordinationRound[]; recent: CoordinationRound[] } {
    return { rounds: [...state.rounds.values()].map((r) => r.round), recent: [...state.recentRounds] };
  }

  return { startRound, moveRound, roundTaskEnded, finishRound, coordination };
}
