import { equals } from "@bufbuild/protobuf";
import { TaskSpecSchema, TaskState, type Task, type TaskSpec } from "../../gen/baton/v1/control_pb.js";
import { BatonError, Code, failedPrecondition, invalidArgument, notFound, quote } from "../errors.js";
import { assertProtocolValid, assertTaskSpecFits, isValidAgentId } from "../protocol/index.js";
import { journalKeyHint } from "../store/index.js";
import { asCallerSees, assertServing, durable, durably, publishTask, type CoordinatorState } from "./coordinator-state.js";
import type { CoordinatorParts } from "./parts.js";
import { isTerminal, type TaskRuntime } from "./runtime.js";

/** The tasks as the Control API sees them: submit, read, list, cancel, resubmit. */
export interface TaskControl {
  submitTask(spec: TaskSpec, submitter: string): Promise<{ task: Task; created: boolean }>;
  submitTasks(specs: TaskSpec[], submitter: string): Promise<Array<{ taskId: string; code: Code; message: string; created: boolean }>>;
  taskCounts(): Map<TaskState, number>;
  getTask(taskId: string): Task;
  listTasks(states: TaskState[], pageSize: number, after: string): { tasks: Task[]; next: string };
  /** The page token that continues a listing after this task (one ListTasks returned). */
  pageToken(taskId: string): string;
  cancelTask(taskId: string, reason: string): Promise<Task>;
  resubmitTask(taskId: string): Promise<Task>;
}

/** Control's calls on tasks: each checks what it is given, has the task engine change the task, and answers once the change is durable. */
export function createTaskControl(state: CoordinatorState, parts: CoordinatorParts): TaskControl {
  const { config, logger } = state;

  /** Accepts a task; resolves once it is durable. The same task_id submits once. */
  async function submitTask(spec: TaskSpec, submitter: string): Promise<{ task: Task; created: boolean }> {
    assertServing(state);
    assertProtocolValid(TaskSpecSchema, spec);
    // The spec travels whole in SubmitTask's and GetTask's answers, ListTasks pages, task events and the directive: it must fit them all.
    const bytes = assertTaskSpecFits(spec, config.limits);
    if (!isValidAgentId(spec.taskId)) throw invalidArgument(`TaskSpec: task_id ${quote(spec.taskId)} must be 1 to 128 of A-Z a-z 0-9 . _ -`);
    if (spec.coalition) {
      const size = Math.max(spec.coalition.size, spec.coalition.roles.length);
      if (size > 64) throw invalidArgument(`TaskSpec: coalition.size ${size} is over the limit of 64 members`);
      spec.coalition.roles.forEach((role, i) => {
        if (!role.trim()) throw invalidArgument(`TaskSpec: coalition.roles[${i}] is empty`);
      });
    }
    if (spec.target?.agentId && !isValidAgentId(spec.target.agentId)) throw invalidArgument("TaskSpec: target.agent_id is not a valid agent id");
    if (spec.sensitiveInput && !state.journal.holdsSecrets) {
      throw failedPrecondition(`TaskSpec: sensitive_input is sealed at rest in the journal, and no journal key is configured: set store.keyFile (${config.store.keyFile} does not exist) or BATON_JOURNAL_KEY; ${journalKeyHint(config.store.keyFile)}`);
    }
    if (spec.sensitiveInput && config.security.messageSecurity === "off") {
      throw failedPrecondition("TaskSpec: sensitive_input needs message security (security.messageSecurity \"required\") to be sealed for the agent");
    }
    const existing = state.tasks.get(spec.taskId);
    if (existing) {
      if (!equals(TaskSpecSchema, existing.task.spec!, spec)) throw new BatonError(Code.ALREADY_EXISTS, `task ${spec.taskId} was already submitted with a different spec`);
      // Not "created: false" before the first submit is durable: that write may yet fail.
      await existing.created;
      return { task: existing.task, created: false };
    }
    parts.engine.assertRoomFor(bytes);
    const rt: TaskRuntime = parts.engine.newTask(spec, submitter, bytes);
    const task = rt.task;
    // In memory first, so a concurrent duplicate finds it and waits; acknowledged only once durable.
    const written = state.journal.commit({ tasks: [task] });
    rt.created = asCallerSees(written, `task ${spec.taskId}`);
    parts.engine.addTask(rt);
    // Published with its own write (the commit itself, so ahead of a plan's events in the
    // same batch), before a plan can change it: "submitted" (pending) comes first.
    publishTask(state, task, "submitted", written);
    // Planned while its record is being written: its directive's record then joins the same
    // group commit (an idle coordinator plans at once), and nothing reaches an agent before
    // both are durable. A failed write drops the whole unacknowledged state
    // (onJournalFailed), this task and any plan for it with it.
    parts.rounds.requestSchedule("task_submitted");
    try {
      await rt.created;
    } finally {
      delete rt.created;
    }
    return { task, created: true };
  }

  /**
   * Accepts many tasks at once, each on its own terms (as submitTask: idempotent by id, its
   * own refusal), with one durable write for all: each submit's commit joins the same group
   * commit, since none waits before it has committed.
   */
  async function submitTasks(specs: TaskSpec[], submitter: string): Promise<Array<{ taskId: string; code: Code; message: string; created: boolean }>> {
    assertServing(state);
    if (specs.length === 0) throw invalidArgument("SubmitTasksRequest: tasks is empty");
    const max = config.tasks.maxBulk;
    if (specs.length > max) throw invalidArgument(`SubmitTasksRequest: ${specs.length} tasks is over the limit of ${max} a call (tasks.maxBulk)`);
    const outcomes = await Promise.allSettled(specs.map((spec) => submitTask(spec, submitter)));
    return outcomes.map((o, i) => {
      const taskId = specs[i]!.taskId;
      if (o.status === "fulfilled") return { taskId, code: Code.OK, message: "", created: o.value.created };
      const err = BatonError.from(o.reason);
      if (err.code === Code.INTERNAL) logger.error({ err: o.reason, task_id: taskId }, "bulk submit of a task failed");
      return { taskId, code: err.code, message: err.code === Code.INTERNAL ? "internal error" : err.message, created: false };
    });
  }

  /** How many tasks are in each state. */
  function taskCounts(): Map<TaskState, number> {
    return new Map(state.stateCounts);
  }

  /** One task. */
  function getTask(taskId: string): Task {
    assertServing(state);
    return held(taskId).task;
  }

  // A task held, or NOT_FOUND saying that an ended one may have been forgotten.
  function held(taskId: string): TaskRuntime {
    const rt = state.tasks.get(taskId);
    if (rt) return rt;
    const { keepEnded, keepEndedMs } = config.tasks;
    const age = keepEndedMs > 0 ? ` for ${keepEndedMs} ms at most (tasks.keepEndedMs)` : "";
    throw notFound(`no task ${JSON.stringify(taskId)} (or it ended and was forgotten: the ${keepEnded} ended last are kept (tasks.keepEnded)${age})`);
  }

  /**
   * Tasks in creation order, filtered by state, paged by task id: a page continues after the
   * named task's place in creation order, whatever its state is now, so paging never breaks
   * when a task changes state between pages.
   */
  function listTasks(states: TaskState[], pageSize: number, after: string): { tasks: Task[]; next: string } {
    assertServing(state);
    const wanted = new Set(states);
    const start = after ? firstAfter(after) : 0;
    const tasks: Task[] = [];
    for (let i = start; i < state.order.length; i++) {
      const rt = state.order[i]!;
      if (rt.forgotten || (wanted.size > 0 && !wanted.has(rt.task.state))) continue;
      // One more than the page: then there is a next page.
      if (tasks.length === pageSize) return { tasks, next: pageToken(tasks.at(-1)!.spec!.taskId) };
      tasks.push(rt.task);
    }
    return { tasks, next: "" };
  }

  // A page token is "<numbering>:<seq>:<task id>": the task's place in creation order, which
  // still holds once that task has been forgotten, and its id, which still holds after a
  // restart numbers creation order anew. A bare task id (tokens before retention) is read too.
  function pageToken(taskId: string): string {
    const rt = state.tasks.get(taskId);
    return rt ? `${state.listing.tag}:${rt.seq}:${taskId}` : "";
  }

  // Where a page continues in state.order: just after the token's task.
  function firstAfter(token: string): number {
    const parts = token.split(":");
    const taskId = parts.length === 3 ? parts[2]! : token;
    const seq = parts.length === 3 && /^\d{1,15}$/.test(parts[1]!) ? Number(parts[1]) : undefined;
    // This numbering's place first: the id may since have been forgotten and submitted anew, elsewhere in the order.
    if (seq !== undefined && parts[0] === state.listing.tag) return indexAfter(seq);
    const from = state.tasks.get(taskId);
    if (from) return indexAfter(from.seq);
    if (seq !== undefined && isValidAgentId(taskId)) {
      throw invalidArgument(`page_token continues after task ${quote(taskId)}, which has since been forgotten (tasks.keepEnded), from before the coordinator last loaded its journal; list again from the start`);
    }
    throw invalidArgument("page_token is not one ListTasks returned (it names no task of this listing)");
  }

  // The index in state.order of the first task numbered after `seq` (order is sorted by seq; holes keep theirs).
  function indexAfter(seq: number): number {
    let lo = 0;
    let hi = state.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (state.order[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Cancels a task; its agent is told and its handler's signal aborts. */
  async function cancelTask(taskId: string, reason: string): Promise<Task> {
    assertServing(state);
    const rt = held(taskId);
    if (rt.task.state === TaskState.CANCELLED) {
      await durable(state);
      return rt.task;
    }
    if (isTerminal(rt.task.state)) throw failedPrecondition(`task ${taskId} has already ended (${TaskState[rt.task.state]})`);
    parts.engine.cancel(rt, reason);
    parts.book.roundTaskEnded(taskId, false, "cancelled", 0);
    publishTask(state, rt.task, "cancelled");
    await durably(state, { tasks: [rt.task] }, `the cancellation of task ${taskId}`);
    // Agents are told only once the cancellation is durable.
    parts.coalitions.dissolve(rt, reason || "cancelled");
    return rt.task;
  }

  /** Puts a dead-lettered task back to pending, its attempt count reset, its history kept. */
  async function resubmitTask(taskId: string): Promise<Task> {
    assertServing(state);
    const rt = held(taskId);
    if (rt.task.state !== TaskState.DEAD_LETTERED) throw failedPrecondition(`only a dead-lettered task can be resubmitted; ${taskId} is ${TaskState[rt.task.state]}`);
    parts.engine.resubmit(rt);
    publishTask(state, rt.task, "resubmitted");
    await durably(state, { tasks: [rt.task] }, `the resubmission of task ${taskId}`);
    parts.rounds.requestSchedule();
    return rt.task;
  }

  return { submitTask, submitTasks, taskCounts, getTask, listTasks, pageToken, cancelTask, resubmitTask };
}
