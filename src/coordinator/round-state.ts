import { CoordinationState } from "../../gen/baton/v1/control_pb.js";
import { failedPrecondition } from "../errors.js";

/** The spec's triggers. */
export type RoundTrigger =
  | "system_state_change"
  | "plan_ready"
  | "coordination_failure"
  | "execution_started"
  | "completion"
  | "adjustment_needed"
  | "recovery_complete"
  | "retry_coordination";

/** Exactly the spec's transitions; anything else is a bug and is refused. */
export const TRANSITIONS: ReadonlyMap<CoordinationState, ReadonlyMap<RoundTrigger, CoordinationState>> = new Map([
  [CoordinationState.IDLE, new Map([["system_state_change", CoordinationState.COORDINATING]])],
  [
    CoordinationState.COORDINATING,
    new Map<RoundTrigger, CoordinationState>([
      ["plan_ready", CoordinationState.EXECUTING],
      ["coordination_failure", CoordinationState.ERROR],
    ]),
  ],
  [CoordinationState.EXECUTING, new Map([["execution_started", CoordinationState.MONITORING]])],
  [
    CoordinationState.MONITORING,
    new Map<RoundTrigger, CoordinationState>([
      ["completion", CoordinationState.IDLE],
      ["adjustment_needed", CoordinationState.COORDINATING],
    ]),
  ],
  [
    CoordinationState.ERROR,
    new Map<RoundTrigger, CoordinationState>([
      ["recovery_complete", CoordinationState.IDLE],
      ["retry_coordination", CoordinationState.COORDINATING],
    ]),
  ],
]);

/** The state a trigger leads to, or FAILED_PRECONDITION when the spec has no such transition. */
export function nextState(state: CoordinationState, trigger: RoundTrigger): CoordinationState {
  const next = TRANSITIONS.get(state)?.get(trigger);
  if (next === undefined) throw failedPrecondition(`no transition from ${CoordinationState[state]} on ${trigger}`);
  return next;
}

/** Whether the spec allows the trigger in this state. */
export function canTransition(state: CoordinationState, trigger: RoundTrigger): boolean {
  return TRANSITIONS.get(state)?.has(trigger) ?? false;
}
