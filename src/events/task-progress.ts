import { TaskState, type Task } from "../../gen/baton/v1/control_pb.js";
import type { ProgressUpdate } from "../../gen/baton/v1/coordination_pb.js";
import { isTerminal, type Coordinator } from "../coordinator/index.js";
import type { EventLog } from "./event-log.js";
import { topicSegment as seg } from "./topic-pattern.js";

/** The latest progress of each running task, for GetTask. */
export interface TaskProgressView {
  /** The latest progress its agent reported, while the task is open; undefined before the first and once it has ended. */
  latest(taskId: string): ProgressUpdate | undefined;
}

interface Pending {
  /** When the last event of this task was published (ms, the feed's clock). */
  publishedAt: number;
  /** The latest update not yet published, if any, and the timer that will publish it. */
  waiting: ProgressUpdate | undefined;
  timer: NodeJS.Timeout | undefined;
  latest: ProgressUpdate;
}

/** What the progress feed is made from. */
export interface TaskProgressOptions {
  /** Least time between two task.<id>.progress events of one task, ms; 0 publishes every update. */
  intervalMs: number;
  /** The clock, ms; default performance.now. */
  now?: () => number;
}

/**
 * task.<id>.progress events from the agents' progress updates, at most one per task per
 * interval: an update inside the interval replaces any other waiting and is published when
 * the interval ends, so a chatty agent cannot flood watchers and the latest progress is
 * always delivered (also just before the task's final event, if it ends first).
 */
export function publishTaskProgress(coordinator: Coordinator, log: EventLog, options: TaskProgressOptions): TaskProgressView & { stop(): void } {
  const now = options.now ?? (() => performance.now());
  const tasks = new Map<string, Pending>();
  const publish = (taskId: string, p: Pending, update: ProgressUpdate) => {
    p.publishedAt = now();
    p.waiting = undefined;
    log.append({ topic: `task.${seg(taskId)}.progress`, correlationId: update.directiveId, reason: "", kind: { case: "progress", value: { ...update, taskId } } });
  };
  const onProgress = (update: ProgressUpdate, taskId: string) => {
    if (!taskId) return;
    let p = tasks.get(taskId);
    if (!p) {
      p = { publishedAt: Number.NEGATIVE_INFINITY, waiting: undefined, timer: undefined, latest: update };
      tasks.set(taskId, p);
    }
    p.latest = update;
    const wait = p.publishedAt + options.intervalMs - now();
    if (wait <= 0 && !p.timer) return publish(taskId, p, update);
    p.waiting = update;
    if (p.timer) return;
    const entry = p;
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (entry.waiting) publish(taskId, entry, entry.waiting);
    }, Math.max(1, wait));
    entry.timer.unref();
  };
  const onTask = (task: Task) => {
    const taskId = task.spec!.taskId;
    const p = tasks.get(taskId);
    if (!p) return;
    // A new attempt starts from nothing; an ended task's waiting update goes out before its final event.
    if (isTerminal(task.state) || task.state === TaskState.PENDING) {
      clearTimeout(p.timer);
      if (p.waiting) publish(taskId, p, p.waiting);
      tasks.delete(taskId);
    }
  };
  // Before the task events' own listener (publishCoordinatorEvents is wired after this), so a flushed update precedes the final event.
  coordinator.prependListener("task.updated", onTask);
  coordinator.on("directive.progress", onProgress);
  return {
    latest: (taskId) => tasks.get(taskId)?.latest,
    stop() {
      coordinator.off("task.updated", onTask);
      coordinator.off("directive.progress", onProgress);
      for (const p of tasks.values()) clearTimeout(p.timer);
      tasks.clear();
    },
  };
}
