import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ResourceSchema } from "../../gen/baton/v1/common_pb.js";
import { TaskState } from "../../gen/baton/v1/control_pb.js";
import { DeliveryState } from "../../gen/baton/v1/journal_pb.js";
import { unavailable } from "../errors.js";
import { delay } from "../streams/index.js";
import type { CoordinatorState } from "./coordinator-state.js";
import type { CoordinatorParts } from "./parts.js";
import { compareIds } from "./plan-input.js";
import { isTerminal, type TaskRuntime } from "./runtime.js";
import { TaskJournal } from "./task-journal.js";

// Written to learn whether the journal takes writes again after one failed.
const WRITE_PROBE_KEY = "probe/writable";

/** Restore from the journal, at start and after a failed write. */
export interface JournalRecovery {
  /** Loads the journal: tasks and directives survive restarts; their agents may resume. */
  load(): Promise<void>;
  onJournalFailed(err: unknown): void;
}

/**
 * Restore from the journal: at start, tasks, directives (with their reservations and
 * deliveries) and sessions come back as they were journaled; after a failed write,
 * everything not durable is dropped at once (a new epoch) and reloaded once the journal
 * takes writes again. No state change shows before it is durable, so nothing dropped was seen.
 */
export function createJournalRecovery(state: CoordinatorState, parts: CoordinatorParts): JournalRecovery {
  const { config } = state;

  function openJournal(): TaskJournal {
    return new TaskJournal(state.store, (err) => onJournalFailed(err));
  }

  /**
   * A journal write failed (a full disk, an I/O error). What memory holds beyond the journal
   * was never acknowledged, and nothing built on it may leave the process, so it is dropped:
   * sessions end with UNAVAILABLE (agents keep their unacknowledged completions), calls are
   * refused with UNAVAILABLE, and once a probe write succeeds the state is reloaded from the
   * journal, as after a restart.
   */
  function onJournalFailed(err: unknown): void {
    if (state.stopping || state.recovering) return;
    state.recovering = true;
    state.epoch++;
    state.logger.error({ err }, "journal write failed: the coordinator takes no work and reloads the journal once it can write again");
    const reason = unavailable("the coordinator's journal cannot be written; reconnect later");
    for (const id of state.directives.keys()) state.inventory.release(id).catch(() => {});
    for (const agent of state.agentsById.values()) {
      for (const outcome of agent.outcomes.values()) outcome.resolve();
      const session = agent.session;
      agent.session = undefined;
      session?.close(reason);
    }
    clearState();
    void recover();
  }

  // Everything the coordinator holds in memory, dropped (before a reload, and after a reload
  // that failed part-way). The timers and breakers of what is dropped stop with it: a grace
  // timer left on a dropped runtime would otherwise fire after the reload and hand its stale
  // work back, and each breaker would keep listening on the shared clock.
  function clearState(): void {
    clearTimeout(state.wakeTimer);
    for (const rt of state.tasks.values()) clearTimeout(rt.coalition?.timer);
    for (const agent of state.agentsById.values()) {
      clearTimeout(agent.graceTimer);
      clearTimeout(agent.dueTimer);
      agent.graceTimer = undefined;
      agent.dueTimer = undefined;
      agent.breaker.shutdown();
    }
    for (const map of [state.agentsById, state.tasks, state.directives, state.directiveTask, state.rounds, state.taskRound, state.reportedUtilization]) map.clear();
    for (const set of [state.settled, state.claimedAgents, state.claimedTasks, state.triggers, state.pendingTasks, state.delayedTasks, state.resourceHolders, state.replanRounds]) set.clear();
    state.agentRing.agents.length = 0;
    state.agentRing.cursor = 0;
    parts.engine.clearTaskIndex();
  }

  async function recover(): Promise<void> {
    for (let waitMs = 100; !state.stopping; waitMs = Math.min(waitMs * 2, 5000)) {
      await delay(waitMs);
      try {
        await state.store.write([{ type: "put", key: WRITE_PROBE_KEY, value: new Uint8Array(0) }]);
        state.journal = openJournal();
        await load();
      } catch (err) {
        state.logger.debug({ err: (err as Error).message, retry_ms: waitMs }, "journal still cannot be written");
        clearState();
        continue;
      }
      state.recovering = false;
      state.logger.info("journal writable again: state reloaded from it");
      parts.rounds.requestSchedule();
      return;
    }
  }

  async function load(): Promise<void> {
    const { tasks, directives, sessions } = await state.journal.load();
    // The journal holds tasks by id; creation order is rebuilt once, here.
    tasks.sort((a, b) => Number((a.createdAt?.seconds ?? 0n) - (b.createdAt?.seconds ?? 0n)) || (a.createdAt?.nanos ?? 0) - (b.createdAt?.nanos ?? 0) || compareIds(a.spec!.taskId, b.spec!.taskId));
    const ended: Array<{ rt: TaskRuntime; at: number }> = [];
    for (const task of tasks) {
      const rt = parts.engine.taskRuntime(task);
      parts.engine.addTask(rt);
      if (isTerminal(task.state)) ended.push({ rt, at: task.updatedAt ? timestampMs(task.updatedAt) : 0 });
    }
    // Kept from when each ended (its last update); a journal holding more than tasks.keepEnded is trimmed once loaded.
    ended.sort((a, b) => a.at - b.at);
    for (const { rt, at } of ended) parts.retention.ended(rt, at);
    const sessionOf = new Map(sessions.map((s) => [s.agentId, s]));
    const now = state.now();
    for (const jd of directives) {
      const d = jd.directive!;
      const rt = state.tasks.get(jd.taskId);
      if (!rt || isTerminal(rt.task.state)) continue;
      state.directiveTask.set(d.directiveId, { taskId: jd.taskId, agentId: jd.agentId, coalition: d.parameters?.kind.case === "formCoalition" });
      rt.issued.add(d.directiveId);
      if (jd.state === DeliveryState.SETTLED) continue;
      const agent = parts.registry.agentRuntime(jd.agentId, sessionOf.get(jd.agentId)?.sessionId ?? jd.sessionId);
      agent.outbox.restore(d, jd.state === DeliveryState.ACCEPTED ? "accepted" : "sent", now);
      await parts.reservations.reserveFor(rt.task, d, jd.agentId);
      state.directives.set(d.directiveId, jd);
      rt.directives.add(d.directiveId);
      if (d.parameters?.kind.case === "formCoalition") {
        const params = d.parameters.kind.value;
        rt.coalition ??= { coalitionId: params.coalitionId, leader: params.leader, accepted: new Set(), completed: new Map(), timer: undefined };
        if (jd.state === DeliveryState.ACCEPTED) rt.coalition.accepted.add(d.directiveId);
      }
      parts.delivery.track(agent, d.directiveId);
    }
    // A task assigned when the coordinator stopped is pending again unless its directive was restored.
    for (const rt of state.order) if ((rt.task.state === TaskState.ASSIGNED || rt.task.state === TaskState.RUNNING) && rt.directives.size === 0) parts.engine.moveTask(rt, "restored");
    for (const s of sessions) {
      // Every journaled session may resume, an idle agent's as much as one with work out.
      const agent = parts.registry.agentRuntime(s.agentId, s.sessionId);
      if (s.nextSequence > agent.outbox.nextSequence) agent.outbox = parts.registry.newOutbox(agent.maxInFlight, s.nextSequence, agent.outbox);
    }
    // Agents with work out have the grace period to come back and resume.
    // Not coming back is no failure of the agent's own (the coordinator went away): no breaker trips for it.
    for (const agent of state.agentsById.values()) parts.registry.startGrace(agent, "the coordinator restarted", true);
    // Resources from configuration go to the Resource Manager like an agent's own.
    const configured = new Map<string, Array<(typeof config.resources)[number]>>();
    for (const r of config.resources) configured.set(r.agentId, [...(configured.get(r.agentId) ?? []), r]);
    for (const [agentId, list] of configured) {
      await state.inventory.register(agentId, list.map((r) => create(ResourceSchema, { resourceId: r.resourceId, kind: r.kind, capacity: r.capacity })));
    }
    const open = [...state.tasks.values()].filter((t) => !isTerminal(t.task.state)).length;
    state.logger.info({ tasks: tasks.length, open, directives: state.directives.size }, "journal loaded");
  }

  return { load, onJournalFailed };
}
