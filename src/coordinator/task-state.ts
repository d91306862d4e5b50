import { TaskState } from "../../gen/baton/v1/control_pb.js";
import { failedPrecondition } from "../errors.js";

/** What moves a task. */
export type TaskEvent =
  | "assigned"
  | "accepted"
  | "retry"
  | "dead_lettered"
  | "succeeded"
  | "cancelled"
  | "resubmitted"
  // At start: an attempt that was out when the coordinator stopped is pending again unless its directive is restored.
  | "restored";

const { PENDING, ASSIGNED, RUNNING, SUCCEEDED, DEAD_LETTERED, CANCELLED } = TaskState;
const from = (states: TaskState[], to: TaskState) => new Map(states.map((s) => [s, to]));

/** Every transition of a task; anything else is a bug and is refused. */
export const TASK_TRANSITIONS: ReadonlyMap<TaskEvent, ReadonlyMap<TaskState, TaskState>> = new Map([
  ["assigned", from([PENDING], ASSIGNED)],
  ["accepted", from([ASSIGNED], RUNNING)],
  ["retry", from([ASSIGNED, RUNNING], PENDING)],
  ["dead_lettered", from([PENDING, ASSIGNED, RUNNING], DEAD_LETTERED)],
  // A late result may settle a task that waits for its retry (see the late-result rule).
  ["succeeded", from([PENDING, ASSIGNED, RUNNING], SUCCEEDED)],
  ["cancelled", from([PENDING, ASSIGNED, RUNNING], CANCELLED)],
  ["resubmitted", from([DEAD_LETTERED], PENDING)],
  ["restored", from([ASSIGNED, RUNNING], PENDING)],
]);

/** The state an event leads to, or FAILED_PRECONDITION when no such transition exists. */
export function nextTaskState(state: TaskState, event: TaskEvent): TaskState {
  const next = TASK_TRANSITIONS.get(event)?.get(state);
  if (next === undefined) throw failedPrecondition(`a ${TaskState[state]} task cannot be ${event}`);
  return next;
}

/** States in which a task is work the coordinator still holds (the bounds on open tasks count these). */
export function isOpen(state: TaskState): boolean {
  return state === PENDING || state === ASSIGNED || state === RUNNING;
}
