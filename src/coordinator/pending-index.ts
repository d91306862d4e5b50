import { createdMs } from "./plan-input.js";
import type { TaskRuntime } from "./runtime.js";

/** A pending task's place in the index; `live` goes false when it leaves (removed lazily). */
interface Entry {
  readonly rt: TaskRuntime;
  readonly order: number;
  readonly id: string;
  live: boolean;
}

/** One submitter's pending tasks of one priority, oldest first. */
interface Group {
  entries: Entry[];
  /** Entries before it are all dead. */
  head: number;
  live: number;
}

const before = (a: Entry, b: Entry) => a.order < b.order || (a.order === b.order && a.id < b.id);

/**
 * The pending tasks in the planner's order (planningOrder: priority, then round-robin across
 * submitters, then age), read lazily: a scheduling pass under a backlog of thousands takes
 * the first few it can place without sorting them all. Each (priority, submitter) keeps its
 * tasks oldest first; new tasks land at the end, so an insert costs a short search from it.
 * A task that leaves is only marked, and a group is compacted once most of it is dead.
 */
export class PendingIndex {
  private readonly levels = new Map<number, Map<string, Group>>();
  private readonly entries = new Map<TaskRuntime, Entry>();

  /** Tasks held. */
  get size(): number {
    return this.entries.size;
  }

  /** Takes a task that became pending. */
  add(rt: TaskRuntime): void {
    if (this.entries.has(rt)) return;
    const spec = rt.task.spec!;
    const entry: Entry = { rt, order: createdMs(rt), id: spec.taskId, live: true };
    this.entries.set(rt, entry);
    let level = this.levels.get(spec.priority);
    if (!level) this.levels.set(spec.priority, (level = new Map()));
    let group = level.get(rt.task.submitter);
    if (!group) level.set(rt.task.submitter, (group = { entries: [], head: 0, live: 0 }));
    const list = group.entries;
    let at = list.length;
    // From the end: new tasks are the youngest; a retried one goes back to its age.
    while (at > group.head && before(entry, list[at - 1]!)) at--;
    if (at === list.length) list.push(entry);
    else list.splice(at, 0, entry);
    group.live++;
  }

  /** Drops a task that is no longer pending. */
  delete(rt: TaskRuntime): void {
    const entry = this.entries.get(rt);
    if (!entry) return;
    this.entries.delete(rt);
    entry.live = false;
    const spec = rt.task.spec!;
    const level = this.levels.get(spec.priority)!;
    const group = level.get(rt.task.submitter)!;
    group.live--;
    if (group.live === 0) {
      level.delete(rt.task.submitter);
      if (level.size === 0) this.levels.delete(spec.priority);
      return;
    }
    const list = group.entries;
    while (group.head < list.length && !list[group.head]!.live) group.head++;
    // Amortized: compact once the dead outnumber the live.
    if (list.length - group.head > 2 * group.live + 64) {
      group.entries = list.slice(group.head).filter((e) => e.live);
      group.head = 0;
    }
  }

  /** Forgets every task (the journal's state was dropped). */
  clear(): void {
    this.levels.clear();
    this.entries.clear();
  }

  /**
   * The tasks `wanted` accepts, in planningOrder's order over just those tasks: priority
   * (highest first), then each submitter's k-th wanted task before anyone's (k+1)-th, then
   * age, then id. Tasks `wanted` refuses take no turn. Lazy: stop reading when done.
   */
  *inPlanningOrder(wanted: (rt: TaskRuntime) => boolean): Generator<TaskRuntime> {
    const priorities = [...this.levels.keys()].sort((a, b) => b - a);
    for (const priority of priorities) {
      const level = this.levels.get(priority);
      if (!level) continue;
      const groups = [...level.values()].map((g) => ({ list: g.entries, at: g.head }));
      for (;;) {
        // Each submitter's next wanted task: one turn of the round-robin, oldest first.
        const turn: Array<{ entry: Entry; group: (typeof groups)[number] }> = [];
        for (const g of groups) {
          while (g.at < g.list.length && !(g.list[g.at]!.live && wanted(g.list[g.at]!.rt))) g.at++;
          if (g.at < g.list.length) turn.push({ entry: g.list[g.at]!, group: g });
        }
        if (turn.length === 0) break;
        if (turn.length > 1) turn.sort((a, b) => (before(a.entry, b.entry) ? -1 : 1));
        for (const { entry, group } of turn) {
          group.at++;
          // A task that left while the reader held the generator is passed over.
          if (entry.live) yield entry.rt;
        }
      }
    }
  }
}
