import { record, type CoordinatorState } from "./coordinator-state.js";
import type { CoordinatorParts, TaskRetention } from "./parts.js";
import type { TaskRuntime } from "./runtime.js";

// Tasks forgotten in one pass at most: each is a delete in the journal's next batch, and a
// batch is one etcd transaction (store.etcd.maxTxnOps). A longer backlog (a journal loaded
// with more than keepEnded) goes in passes one turn of the event loop apart.
const PASS = 500;
// Node's timers overflow past 2^31 - 1 ms.
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Ended tasks kept for reading (GetTask, ListTasks, a duplicate submit answered as such)
 * until there are more than tasks.keepEnded of them or one has been ended longer than
 * tasks.keepEndedMs; the one ended longest is forgotten first, in memory and in the journal.
 * Without it every task ever submitted stays in the heap and the journal, and a restart
 * loads them all.
 *
 * A pass runs on the turn after an end, never inside it: the end's own commit is made in
 * the same synchronous step as the change, so the delete always lands after it in the
 * journal and a forgotten task's record cannot come back.
 */
export function createTaskRetention(state: CoordinatorState, parts: CoordinatorParts): TaskRetention {
  const { config } = state;
  // Ended tasks, longest ended first (a Map keeps insertion order), with when they ended (ms).
  const ended = new Map<TaskRuntime, number>();
  let passQueued = false;
  let timer: NodeJS.Timeout | undefined;
  let due = Infinity;

  function endedNow(rt: TaskRuntime, at = state.now()): void {
    ended.delete(rt);
    ended.set(rt, at);
    const keepMs = config.tasks.keepEndedMs;
    // Past a bound already (the count, or the age of the one ended longest ago, as the clock reads now): a pass; else the timer for the age.
    if (ended.size > config.tasks.keepEnded || (keepMs > 0 && ended.values().next().value! + keepMs <= state.now())) queuePass();
    else armTimer();
  }

  function reopened(rt: TaskRuntime): void {
    ended.delete(rt);
  }

  function queuePass(): void {
    if (passQueued) return;
    passQueued = true;
    setImmediate(pass);
  }

  function pass(): void {
    passQueued = false;
    if (state.stopping || state.recovering) return;
    const { keepEnded, keepEndedMs } = config.tasks;
    const oldest = keepEndedMs > 0 ? state.now() - keepEndedMs : -Infinity;
    const forgotten: TaskRuntime[] = [];
    for (const [rt, at] of ended) {
      if (forgotten.length === PASS || (ended.size - forgotten.length <= keepEnded && at > oldest)) break;
      forgotten.push(rt);
    }
    for (const rt of forgotten) {
      ended.delete(rt);
      parts.engine.forget(rt);
    }
    if (forgotten.length > 0) {
      void record(state, { deleteTasks: forgotten.map((rt) => rt.task) });
      state.events.emit("tasks.forgotten", forgotten.length);
    }
    if (forgotten.length === PASS) queuePass();
    else armTimer();
  }

  // The age bound's wake-up: when the task ended longest ago passes keepEndedMs.
  function armTimer(): void {
    const keepMs = config.tasks.keepEndedMs;
    const first = ended.values().next();
    if (keepMs === 0 || first.done) return;
    const at = first.value + keepMs;
    if (timer && at >= due) return;
    clearTimeout(timer);
    due = at;
    timer = setTimeout(
      () => {
        timer = undefined;
        due = Infinity;
        queuePass();
      },
      Math.min(MAX_TIMER_MS, Math.max(0, at - state.now())),
    ).unref();
  }

  function clear(): void {
    ended.clear();
    clearTimeout(timer);
    timer = undefined;
    due = Infinity;
  }

  return { ended: endedNow, reopened, clear, held: () => ended.size };
}
