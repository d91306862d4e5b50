import { create } from "@bufbuild/protobuf";
import { TaskAttemptSchema, TaskSpecSchema, TaskState, type Task, type TaskSpec } from "../../gen/baton/v1/control_pb.js";
import { CompletionStatus, type TaskCompletion } from "../../gen/baton/v1/coordination_pb.js";
import { DeliveryState, type JournalDirective } from "../../gen/baton/v1/journal_pb.js";
import { BatonError, Code } from "../errors.js";
import { delayTask, durably, newListing, publishTask, record, stamp, type CoordinatorState } from "./coordinator-state.js";
import type { CoordinatorParts, TaskEngine } from "./parts.js";
import { actionOf, timestampMsOf } from "./plan-input.js";
import { isTerminal, type AgentRuntime, type DirectiveOwner, type TaskRuntime } from "./runtime.js";
import type { TaskJournal } from "./task-journal.js";
import { isOpen, nextTaskState, type TaskEvent } from "./task-state.js";
import { encodeBinary } from "../rpc/index.js";

// Outcomes that count against a task's maxAttempts; losing an agent or a NAK does not.
const COUNTED = new Set(["directive_failed", "lease_expired", "rejected", "coalition_not_formed"]);
// Remember settled completions so a resent TaskCompletion is acknowledged, not applied twice.
const SETTLED_MEMORY = 100_000;

// How long a directive's acceptance may wait for another commit to share its fsync, ms.
const ACCEPT_DEFER_MS = 5;

/**
 * The task engine: the only code that writes a Task. Its state moves only by the task
 * state table (moveTask), which also keeps the indexes (creation order, pending set, counts
 * by state) and the bounds on open work. What an attempt's end means (retry, dead letter,
 * success, the late-result rule) is decided here too.
 */
export function createTaskEngine(state: CoordinatorState, parts: CoordinatorParts): TaskEngine {
  const { config, logger } = state;

  function taskRuntime(task: Task): TaskRuntime {
    const excluded = new Set<string>();
    for (const a of task.attempts) if (a.outcome === "rejected") for (const agent of a.agents) excluded.add(agent);
    return { task, excluded, notBefore: 0, directives: new Set(), coalition: undefined, seq: 0, bytes: encodeBinary(TaskSpecSchema, task.spec!).byteLength, issued: new Set() };
  }

  function newTask(spec: TaskSpec, submitter: string, bytes: number): TaskRuntime {
    // Literals, every field set as create() would: one of each per task, and create() costs more than the rest.
    const task: Task = { $typeName: "baton.v1.Task", state: TaskState.PENDING, submitter, assignedAgents: [], attempts: [], reason: "", spec, createdAt: stamp(state), updatedAt: stamp(state) };
    return { task, excluded: new Set(), notBefore: 0, directives: new Set(), coalition: undefined, seq: 0, bytes, issued: new Set() };
  }

  /** Refuses new open work beyond tasks.maxOpen and tasks.maxOpenBytes: pending work is bounded, not held until the heap runs out. */
  function assertRoomFor(bytes: number): void {
    const { maxOpen, maxOpenBytes } = config.tasks;
    if (state.open.tasks >= maxOpen) throw new BatonError(Code.RESOURCE_EXHAUSTED, `the coordinator holds ${state.open.tasks} open tasks, its limit (tasks.maxOpen, BATON_MAX_OPEN_TASKS); submit again once some have finished`);
    if (state.open.bytes + bytes > maxOpenBytes) {
      throw new BatonError(Code.RESOURCE_EXHAUSTED, `open tasks hold ${state.open.bytes} bytes of specs; this one (${bytes} bytes) would pass the limit of ${maxOpenBytes} (tasks.maxOpenBytes, BATON_MAX_OPEN_TASK_BYTES); submit again once some have finished`);
    }
  }

  function addTask(rt: TaskRuntime): void {
    rt.seq = state.listing.nextSeq++;
    state.order.push(rt);
    state.tasks.set(rt.task.spec!.taskId, rt);
    countState(rt, rt.task.state, 1);
  }

  /** The one way a task's state changes: by the task state table, keeping the indexes and the bounds. */
  function moveTask(rt: TaskRuntime, event: TaskEvent): void {
    const previous = rt.task.state;
    const next = nextTaskState(previous, event);
    countState(rt, previous, -1);
    rt.task.state = next;
    countState(rt, next, 1);
    if (isTerminal(next)) {
      // An ended task's directives have no owner to check against any more: a late report of one changes nothing.
      for (const d of rt.issued) state.directiveTask.delete(d);
      if (!isTerminal(previous)) parts.retention.ended(rt);
    } else if (isTerminal(previous)) parts.retention.reopened(rt);
  }

  /** Drops an ended task from every index: GetTask no longer finds it, ListTasks skips its place, its id may be submitted anew. */
  function forget(rt: TaskRuntime): void {
    const id = rt.task.spec!.taskId;
    if (state.tasks.get(id) !== rt) return;
    state.tasks.delete(id);
    countState(rt, rt.task.state, -1);
    rt.forgotten = true;
    // Creation order keeps a hole until the holes are half of it: then one pass compacts it, O(1) a task over time.
    if (++state.listing.holes * 2 > state.order.length) {
      let kept = 0;
      for (const t of state.order) if (!t.forgotten) state.order[kept++] = t;
      state.order.length = kept;
      state.listing.holes = 0;
    }
  }

  function countState(rt: TaskRuntime, taskState: TaskState, delta: 1 | -1): void {
    state.stateCounts.set(taskState, (state.stateCounts.get(taskState) ?? 0) + delta);
    if (isOpen(taskState)) {
      state.open.tasks += delta;
      state.open.bytes += delta * rt.bytes;
    }
    if (taskState === TaskState.PENDING) {
      if (delta > 0) {
        state.pendingTasks.add(rt);
        state.pendingOrder.add(rt);
      } else {
        state.pendingTasks.delete(rt);
        state.pendingOrder.delete(rt);
      }
    }
  }

  function clearTaskIndex(): void {
    state.order.length = 0;
    state.listing = newListing();
    parts.retention.clear();
    state.pendingTasks.clear();
    state.pendingOrder.clear();
    state.delayedTasks.clear();
    state.stateCounts.clear();
    state.open = { tasks: 0, bytes: 0 };
  }

  /** A new attempt of a pending task, with the directives that carry it: the task is assigned. */
  function startAttempt(rt: TaskRuntime, agents: string[], directiveIds: string[]): number {
    const attemptNo = rt.task.attempts.length + 1;
    rt.task.attempts.push({ $typeName: "baton.v1.TaskAttempt", attempt: attemptNo, agents: [...agents], directiveIds: [...directiveIds], outcome: "", reason: "", startedAt: stamp(state) });
    moveTask(rt, "assigned");
    rt.task.assignedAgents = [...agents];
    rt.task.updatedAt = stamp(state);
    rt.directives = new Set(directiveIds);
    rt.coalition = undefined;
    return attemptNo;
  }

  /** Takes back an attempt that never went out (its breaker refused it): it costs the task nothing. */
  function undoAttempt(rt: TaskRuntime): void {
    rt.task.attempts.pop();
    rt.directives.clear();
    moveTask(rt, "retry");
    rt.task.assignedAgents = [];
  }

  function cancel(rt: TaskRuntime, reason: string): void {
    closeAttempt(rt.task, "cancelled", reason);
    moveTask(rt, "cancelled");
    rt.task.reason = reason || "cancelled";
    rt.task.assignedAgents = [];
    rt.task.updatedAt = stamp(state);
  }

  function resubmit(rt: TaskRuntime): void {
    // Refused before anything changes: a refused resubmit leaves no attempt behind.
    assertRoomFor(rt.bytes);
    rt.task.attempts.push(create(TaskAttemptSchema, { attempt: rt.task.attempts.length + 1, outcome: "resubmitted", startedAt: stamp(state), endedAt: stamp(state) }));
    moveTask(rt, "resubmitted");
    rt.task.reason = "resubmitted";
    rt.excluded.clear();
    rt.notBefore = 0;
    rt.task.updatedAt = stamp(state);
  }

  function onAccepted(jd: JournalDirective): void {
    const rt = state.tasks.get(jd.taskId);
    jd.state = DeliveryState.ACCEPTED;
    const change: Parameters<TaskJournal["commit"]>[0] = { directives: [jd] };
    const id = jd.directive!.directiveId;
    rt?.coalition?.accepted.add(id);
    // A coalition runs once every member has accepted (gang scheduling); a lone directive at once.
    const formed = !rt?.coalition || rt.coalition.accepted.size === rt.directives.size;
    if (rt && formed && rt.coalition) clearTimeout(rt.coalition.timer);
    const running = !!rt && rt.directives.has(id) && formed && rt.task.state === TaskState.ASSIGNED;
    if (running) {
      moveTask(rt, "accepted");
      rt.task.updatedAt = stamp(state);
      change.tasks = [rt.task];
    }
    // Nothing waits on it, and losing it costs at most a redelivery the agent drops as a
    // duplicate (re-acking it): it rides with the completion that usually follows at once.
    // Its event waits for that write (a barrier would force one now).
    const written = record(state, change, { deferMs: ACCEPT_DEFER_MS });
    if (running) publishTask(state, rt.task, "accepted", written);
  }

  /**
   * Ends the current attempt of a directive's task: rolls back what the directive changed,
   * then retries (back to pending) or dead-letters it when its attempts are spent.
   */
  function endAttempt(jd: JournalDirective, outcome: string, reason: string, options: { exclude?: string | undefined; delayMs?: number }): void {
    const id = jd.directive!.directiveId;
    state.directives.delete(id);
    // Roll back what the directive changed: its reservations go back to the pool.
    parts.reservations.release(id);
    const rt = state.tasks.get(jd.taskId);
    if (!rt || !rt.directives.has(id) || isTerminal(rt.task.state)) {
      void record(state, { deleteDirectives: [id] });
      return;
    }
    rt.directives.delete(id);
    // All or nothing: one member's end ends the coalition; the others are cancelled and released.
    parts.coalitions.dissolve(rt, `coalition member ${jd.agentId}: ${outcome}`);
    closeAttempt(rt.task, outcome, reason);
    state.performance?.recordDirective(jd.agentId, false);
    // Every failure is visible: this line, the task's status and history, an event and a metric.
    logger.info({ task_id: jd.taskId, directive_id: id, agent_id: jd.agentId, correlation_id: jd.directive!.correlationId, outcome, reason }, "task attempt ended");
    if (options.exclude) rt.excluded.add(options.exclude);
    const counted = countedFailures(rt.task);
    const delivered = deliveries(rt.task);
    const spec = rt.task.spec!;
    const maxAttempts = spec.maxAttempts || config.tasks.maxAttempts;
    if (counted >= maxAttempts || delivered >= config.tasks.maxDeliveries) {
      moveTask(rt, "dead_lettered");
      rt.task.reason = counted >= maxAttempts ? `${counted} attempts failed; last: ${outcome}: ${reason}` : `${delivered} deliveries without success; last: ${outcome}: ${reason}`;
      rt.task.assignedAgents = [];
      logger.warn({ task_id: spec.taskId, outcome, reason: rt.task.reason }, "task dead-lettered");
    } else {
      moveTask(rt, "retry");
      rt.task.assignedAgents = [];
      rt.task.reason = `${outcome}: ${reason}`;
      const backoff = COUNTED.has(outcome) ? config.tasks.retryDelayMs * 2 ** Math.max(0, counted - 1) : 0;
      delayTask(state, rt, state.now() + Math.max(backoff, options.delayMs ?? 0));
    }
    rt.task.updatedAt = stamp(state);
    parts.book.roundTaskEnded(jd.taskId, false, actionOf(jd.directive!), state.now() - timestampMsOf(jd.directive!));
    publishTask(state, rt.task, outcome);
    void record(state, { tasks: [rt.task], deleteDirectives: [id] });
    parts.rounds.requestSchedule(outcome === "lease_expired" ? "progress_stalled" : outcome === "agent_unavailable" ? "agent_lost" : outcome);
  }

  function closeAttempt(task: Task, outcome: string, reason: string): void {
    const attempt = task.attempts.at(-1);
    if (attempt && !attempt.endedAt) {
      attempt.endedAt = stamp(state);
      attempt.outcome = outcome;
      attempt.reason = reason;
    }
  }

  /** The attempt a directive belongs to. */
  function attemptOf(task: Task, directiveId: string) {
    return task.attempts.find((a) => a.directiveIds.includes(directiveId));
  }

  function annotateAttempt(task: Task, directiveId: string, note: string): void {
    const attempt = attemptOf(task, directiveId);
    if (attempt) attempt.reason = attempt.reason ? `${attempt.reason}; ${note}` : note;
  }

  /** A closed attempt whose result came late and settled the task: its record says both. */
  function succeedLate(task: Task, directiveId: string, agentId: string): void {
    const attempt = attemptOf(task, directiveId);
    if (!attempt) return;
    attempt.reason = `completed by ${agentId} after the attempt was closed as ${attempt.outcome || "ended"}${attempt.reason ? ` (${attempt.reason})` : ""}`;
    attempt.outcome = "succeeded";
  }

  function countedFailures(task: Task): number {
    let n = 0;
    for (const a of task.attempts) {
      if (a.outcome === "resubmitted") n = 0;
      else if (COUNTED.has(a.outcome)) n++;
    }
    return n;
  }

  function deliveries(task: Task): number {
    let n = 0;
    for (const a of task.attempts) n = a.outcome === "resubmitted" ? 0 : n + 1;
    return n;
  }

  async function onCompletion(completion: TaskCompletion, owner: DirectiveOwner | undefined, agent: AgentRuntime): Promise<void> {
    const id = completion.directiveId;
    if (state.settled.has(completion.eventId)) return;
    const jd = state.directives.get(id);
    agent.outbox.settle(id);
    parts.delivery.settleOutcome(agent, id);
    if (completion.status === CompletionStatus.SUCCEEDED) parts.reservations.release(id);
    const rt = owner ? state.tasks.get(owner.taskId) : undefined;
    state.events.emit("directive.completed", completion, jd?.directive);
    if (!rt || isTerminal(rt.task.state)) {
      // Settled already (a duplicate, or the task finished elsewhere): acknowledge, change nothing.
      if (jd) state.directives.delete(id);
      remember(completion.eventId);
      return;
    }
    const current = rt.directives.has(id);
    if (completion.status === CompletionStatus.SUCCEEDED && current && rt.coalition) {
      // A coalition succeeds when every member has; the leader's result is the task's.
      const coalition = rt.coalition;
      coalition.completed.set(id, completion);
      if (jd) state.directives.delete(id);
      await durably(state, { deleteDirectives: [id] }, `the completion of directive ${id}`);
      // Another member's completion, which arrived with this one, may have settled the task meanwhile.
      if (rt.coalition !== coalition || isTerminal(rt.task.state)) {
        remember(completion.eventId);
        return;
      }
      if (coalition.completed.size < rt.directives.size) return;
      const leaderResult = [...coalition.completed.values()].find((c) => c.sourceAgent === coalition.leader)?.result;
      if (leaderResult) completion.result = leaderResult;
    }
    // The late-result rule: a success from an attempt already closed (its agent was given up
    // on, its lease ran out) is the task's result only while no other attempt is running;
    // its attempt record then says it succeeded late. A superseded coalition member alone never settles it.
    const late = !current && completion.status === CompletionStatus.SUCCEEDED && !owner?.coalition;
    if (late && rt.task.state === TaskState.RUNNING) {
      annotateAttempt(rt.task, id, `its result arrived late, from ${agent.agentId}, while attempt ${rt.task.attempts.at(-1)?.attempt ?? "?"} was running, and was not used`);
      remember(completion.eventId);
      await durably(state, { tasks: [rt.task], deleteDirectives: [id] }, `the completion of directive ${id}`);
      return;
    }
    if (completion.status === CompletionStatus.SUCCEEDED && (current || late)) {
      if (jd) state.directives.delete(id);
      // Another attempt only assigned (not yet running) is called off: the late result wins.
      if (!current) for (const other of rt.directives) parts.delivery.cancelDirective(other, "the task succeeded on another attempt");
      rt.directives.clear();
      if (rt.coalition) clearTimeout(rt.coalition.timer);
      rt.coalition = undefined;
      if (current) closeAttempt(rt.task, "succeeded", `completed by ${agent.agentId}`);
      else {
        closeAttempt(rt.task, "cancelled", `superseded: an earlier attempt's late result from ${agent.agentId} succeeded`);
        succeedLate(rt.task, id, agent.agentId);
      }
      parts.book.roundTaskEnded(rt.task.spec!.taskId, true, jd?.directive ? actionOf(jd.directive) : "assign_task", jd?.directive ? state.now() - timestampMsOf(jd.directive) : 0);
      state.performance?.recordDirective(agent.agentId, true);
      moveTask(rt, "succeeded");
      if (completion.result) rt.task.result = completion.result;
      rt.task.reason = "";
      rt.task.updatedAt = stamp(state);
      const forget = [...rt.issued];
      await durably(state, { tasks: [rt.task], deleteDirectives: forget }, `the completion of directive ${id}`);
      for (const d of forget) state.directiveTask.delete(d);
      rt.issued.clear();
      remember(completion.eventId);
      publishTask(state, rt.task, "succeeded");
      parts.rounds.requestSchedule();
      return;
    }
    remember(completion.eventId);
    if (!current || !jd) {
      await durably(state, { deleteDirectives: [id] }, `the completion of directive ${id}`);
      return;
    }
    const error = completion.error;
    if (completion.status === CompletionStatus.FAILED && error?.code === "resource_conflict") {
      endAttempt(jd, "resource_conflict", error.message, {});
    } else if (completion.status === CompletionStatus.FAILED && error && !error.retryable) {
      endAttempt(jd, "directive_failed", error.message, {});
      if (!isTerminal(rt.task.state)) deadLetter(rt, `directive_failed (not retryable): ${error.message}`);
    } else {
      endAttempt(jd, "directive_failed", error?.message || (completion.status === CompletionStatus.CANCELLED ? "the agent cancelled it" : "the agent reported failure"), {});
    }
  }

  function deadLetter(rt: TaskRuntime, reason: string): void {
    moveTask(rt, "dead_lettered");
    parts.book.roundTaskEnded(rt.task.spec!.taskId, false, "assign_task", 0);
    rt.task.reason = reason;
    rt.task.updatedAt = stamp(state);
    publishTask(state, rt.task, "dead_lettered");
    void record(state, { tasks: [rt.task] });
  }

  function remember(eventId: string): void {
    state.settled.add(eventId);
    if (state.settled.size > SETTLED_MEMORY) state.settled.delete(state.settled.values().next().value!);
  }

  return { taskRuntime, newTask, assertRoomFor, addTask, moveTask, forget, clearTaskIndex, startAttempt, undoAttempt, cancel, resubmit, onAccepted, endAttempt, onCompletion };
}
