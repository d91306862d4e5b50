import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { CoordinationState, TaskState } from "../../gen/baton/v1/control_pb.js";
import { MetricsRequestSchema } from "../../gen/baton/v1/performance_monitor_pb.js";
import { Code, unavailable, type BatonError } from "../errors.js";
import { generatePlan } from "../planner/index.js";
import { logParticipant, PM, RM, stamp, type CoordinatorState } from "./coordinator-state.js";
import type { CoordinationRounds, CoordinatorParts } from "./parts.js";
import { findCandidates, hasIdleMisfit } from "./candidate-search.js";
import { donorAgent, freeSlots, isCandidate, planAgents, planTask } from "./plan-input.js";
import type { AgentRuntime, RoundRuntime, TaskRuntime } from "./runtime.js";

// Up to this many pending tasks a pass reads them all; past it, what the free agents can take.
const INTAKE_MIN = 512;
// Widening multiplies the read by 4 a pass: 2^20 times the smallest read (512) is past any backlog a coordinator holds, so the read can always reach all of it.
const MAX_INTAKE_BOOST = 1 << 20;

/**
 * Coordination rounds: a state change asks for one (requestSchedule); a pass takes every
 * ready task into a new round, lets rounds that need adjusting re-plan their own, and runs
 * the spec's steps 2 to 6 for each (status from the synced view, resources from the RM, the
 * plan, the directives, monitoring). The round's record is the round book's.
 */
export function createCoordinationRounds(state: CoordinatorState, parts: CoordinatorParts): CoordinationRounds {
  const { config } = state;

  function requestSchedule(trigger = "system_state_change"): void {
    if (state.recovering) return;
    state.triggers.add(trigger);
    if (state.scheduleQueued || state.stopping || state.draining) return;
    state.scheduleQueued = true;
    const pass = () => {
      state.scheduleQueued = false;
      void schedule();
    };
    // Idle (nothing else waiting, no round planning), a pass runs at once, before the
    // journal's next group commit, so the directive shares the fsync of the change that
    // asked for it; busy, it waits a turn of the event loop and takes every ready task.
    if (state.pendingTasks.size <= 1 && state.claimedTasks.size === 0) queueMicrotask(pass);
    else setImmediate(pass);
  }

  /**
   * One coordination round, the spec's success scenario: a state change starts it
   * (idle -> coordinating); it collects status from the agents concerned, verifies their
   * resources with the Resource Manager, generates a plan (-> executing), distributes the
   * directives (-> monitoring), and when its tasks end (-> idle) reports to the Performance
   * Monitor. Rounds run concurrently: each claims the agents and tasks it plans, and
   * another round plans at the same time with what is left (agents own their resources,
   * so disjoint agents mean disjoint resources).
   */
  async function schedule(): Promise<void> {
    // A pass queued before a drain began places nothing either.
    if (state.draining) return;
    // Every agent is claimed by a round planning now: nothing could be placed, and walking
    // the pending tasks (thousands, under load) would find that out at a cost per pass.
    // The rounds' end asks for the next pass.
    const known = state.agentRing.agents.length;
    if (known > 0 && state.claimedAgents.size >= known) {
      state.replanRequested = true;
      return;
    }
    const now = state.now();
    let wake = Number.POSITIVE_INFINITY;
    for (const rt of state.delayedTasks) {
      if (rt.notBefore <= now || !state.pendingTasks.has(rt)) state.delayedTasks.delete(rt);
      else if (!state.claimedTasks.has(rt.task.spec!.taskId)) wake = Math.min(wake, rt.notBefore);
    }
    const intake = takeIntake(now);
    const fresh = intake.tasks;
    clearTimeout(state.wakeTimer);
    if (Number.isFinite(wake)) {
      state.wakeTimer = setTimeout(() => requestSchedule("retry_due"), Math.max(1, wake - now));
      state.wakeTimer.unref();
    }
    const plans: Array<Promise<void>> = [];
    // Rounds that need adjusting re-plan their own tasks first.
    // Only rounds that have had tasks to re-plan: a busy coordinator has thousands of rounds monitoring.
    for (const rr of state.replanRounds) {
      if (rr.replan.size === 0 || state.rounds.get(rr.round.roundId) !== rr) {
        state.replanRounds.delete(rr);
        continue;
      }
      if (rr.round.state !== CoordinationState.COORDINATING || rr.planningNow) continue;
      const due = [...rr.replan].map((id) => state.tasks.get(id)!).filter((rt) => rt && rt.task.state === TaskState.PENDING && rt.notBefore <= now && !state.claimedTasks.has(rt.task.spec!.taskId));
      if (due.length === 0) continue;
      const { candidates, usable } = findCandidates(state.agentRing, due, state.claimedAgents);
      // Nothing here could run its tasks: it waits for a state change rather than spin.
      if (!usable) continue;
      if (candidates.length === 0) {
        state.replanRequested = true;
        continue;
      }
      plans.push(planRound(rr, due, candidates, true));
    }
    // A round claims only agents that could run one of its tasks: concurrent rounds over other agents proceed.
    const { candidates, usable } = fresh.length > 0 ? findCandidates(state.agentRing, fresh, state.claimedAgents) : { candidates: [], usable: false };
    if (usable && candidates.length === 0) state.replanRequested = true;
    // Under a backlog read in part: a free agent that can run none of what was read may have
    // work further back (a head no agent can run, or work only for other agents).
    const bounded = intake.capped || state.intakeBoost > 1;
    const misfit = bounded && intake.free > 0 && (!usable || hasIdleMisfit(state.agentRing, fresh, state.claimedAgents));
    // What started this pass; a pass that starts no round forgets it.
    const trigger = [...state.triggers].join(",");
    state.triggers.clear();
    if (intake.capped && misfit) {
      widenIntake();
      requestSchedule("intake_widened");
    }
    if (fresh.length > 0 && (candidates.length > 0 || !usable)) plans.push(planRound(parts.book.startRound(trigger), fresh, candidates, false, { capped: intake.capped, bounded, misfit }));
    await Promise.all(plans);
  }

  /**
   * The tasks a pass plans: every ready one while the backlog is small; under a backlog,
   * the first ones in the planner's order, as many as the free agents could take twice
   * over (more while intakeBoost is up), read from the pending index without sorting the
   * rest: a pass then costs what it can place, not what waits. `capped`: some were left.
   */
  function takeIntake(now: number): { tasks: TaskRuntime[]; capped: boolean; free: number } {
    const ready = (rt: TaskRuntime) => rt.notBefore <= now && !state.claimedTasks.has(rt.task.spec!.taskId) && !state.taskRound.has(rt.task.spec!.taskId);
    const tasks: TaskRuntime[] = [];
    const small = state.pendingTasks.size <= INTAKE_MIN;
    if (small) state.intakeBoost = 1;
    let free = 0;
    if (!small) for (const a of state.agentRing.agents) if (!state.claimedAgents.has(a.agentId) && isCandidate(a)) free += freeSlots(a);
    const limit = small ? Infinity : Math.max(INTAKE_MIN, 2 * free) * state.intakeBoost;
    if (limit >= state.pendingTasks.size) {
      for (const rt of state.pendingTasks) if (ready(rt)) tasks.push(rt);
      return { tasks, capped: false, free };
    }
    for (const rt of state.pendingOrder.inPlanningOrder(ready)) {
      if (tasks.length >= limit) return { tasks, capped: true, free };
      tasks.push(rt);
    }
    return { tasks, capped: false, free };
  }

  /** A capped intake left free agents unused while tasks went unread: the next pass reads four times as far. */
  function widenIntake(): void {
    state.intakeBoost = Math.min(state.intakeBoost * 4, MAX_INTAKE_BOOST);
  }

  /** Steps 2 to 6 of a round over the tasks and agents it claims; a resumed round re-plans its own tasks. */
  async function planRound(rr: RoundRuntime, roundTasks: TaskRuntime[], candidates: AgentRuntime[], resumed: boolean, intake = { capped: false, bounded: false, misfit: false }): Promise<void> {
    const claimedAgents = candidates.map((a) => a.agentId);
    const claimedTasks = roundTasks.map((rt) => rt.task.spec!.taskId);
    for (const id of claimedAgents) state.claimedAgents.add(id);
    for (const id of claimedTasks) state.claimedTasks.add(id);
    rr.planningNow = true;
    // After a failed journal write the state is reloaded: this round's view of it is gone.
    const epoch = state.epoch;
    // Draining (SIGTERM) stops placing at once: what this round has not sent yet stays pending in the journal.
    const abandoned = () => state.stopping || state.draining || epoch !== state.epoch;
    const giveUp = (reason: string, wait: string) => {
      parts.book.moveRound(rr, "coordination_failure", reason);
      if (resumed) {
        // The round keeps its tasks and tries again at the next state change.
        parts.book.moveRound(rr, "retry_coordination", wait);
      } else {
        parts.book.moveRound(rr, "recovery_complete", wait);
        parts.book.finishRound(rr, false);
      }
    };
    try {
      // Agents that cannot run these tasks may still give them resources (adjust_resources):
      // they are asked for status and offered to the plan with no slots, but not claimed.
      const donors = [...state.resourceHolders].filter((a) => isCandidate(a) && !state.claimedAgents.has(a.agentId));
      // Step 2: status from the agents concerned, each with a deadline; silence is agent_unavailable.
      const everyone = await collectStatus([...candidates, ...donors], rr.round.roundId);
      if (abandoned()) return;
      const claimed = new Set(claimedAgents);
      const answered = everyone.filter((a) => claimed.has(a.agentId));
      const roundId = rr.round.roundId;
      // The figures the plan weighs: utilization per agent. With the synced view on, each
      // agent's own latest status has it, and the Performance Monitor is asked only for
      // agents that have not reported one; with it off (0), every round asks, as the spec draws it.
      const unknown = config.session.syncIntervalMs > 0 ? answered.filter((a) => !state.reportedUtilization.has(a.agentId)) : answered;
      let metrics: Awaited<ReturnType<NonNullable<typeof state.performance>["metrics"]>> | undefined;
      if (state.performance && unknown.length > 0) {
        const metricsRequest = create(MetricsRequestSchema, { requestId: randomUUID(), timestamp: stamp(state), agentIds: unknown.map((a) => a.agentId) });
        logParticipant(state, roundId, config.coordinatorId, PM, "metrics_request");
        metrics = await state.performance.metrics(metricsRequest).catch((err: unknown) => {
          state.logger.warn({ err: (err as Error).message }, "no figures from the Performance Monitor; planning without them");
          return undefined;
        });
        if (abandoned()) return;
        if (metrics) logParticipant(state, roundId, PM, config.coordinatorId, "system_metrics");
      }
      // Step 3: verify resources with the Resource Manager.
      // The port makes the ResourceQuery itself (a remote Resource Manager's client does); embedded, it is a call.
      logParticipant(state, roundId, config.coordinatorId, RM, "resource_query");
      const status = await state.inventory.query({ agentIds: everyone.map((a) => a.agentId) });
      logParticipant(state, roundId, RM, config.coordinatorId, "resource_status");
      if (abandoned()) return;
      const agents = planAgents(answered, status);
      for (const d of everyone) {
        if (claimed.has(d.agentId)) continue;
        agents.push(donorAgent(d, status));
      }
      // Utilization: fresh from the status responses, else the monitor's figures.
      const utilization = new Map((metrics?.agents ?? []).map((m) => [m.agentId, m.utilization]));
      for (const a of agents) {
        const u = state.reportedUtilization.get(a.agentId) ?? utilization.get(a.agentId);
        if (u !== undefined) a.utilization = u;
      }
      // The round's own tasks, less any cancelled while it collected status.
      const tasks = roundTasks.filter((rt) => rt.task.state === TaskState.PENDING).map((rt) => planTask(rt));
      if (agents.length === 0 || tasks.length === 0) return giveUp(candidates.length === 0 ? "no agent can run these tasks" : agents.length === 0 ? "no agent answered its status request" : "no pending task left to plan", "nothing to execute now");
      // Step 4: the plan.
      const plan = generatePlan({ tasks, agents });
      if (intake.bounded) {
        // Slots left over while some of the intake went unplaced: what could fill them may lie past the intake.
        let placed = 0;
        for (const p of plan.planned) placed += p.members.length;
        const slots = agents.reduce((n, a) => n + a.freeSlots, 0);
        if (plan.unplaced.length > 0 && placed < slots) {
          if (intake.capped) {
            widenIntake();
            state.replanRequested = true;
          }
          // A widened read that fills its agents, with none left idle for want of work it read, is back to the usual one.
        } else if (!intake.misfit) state.intakeBoost = 1;
      }
      // Built only when asked for: with 1,000 agents this line alone is a thousand strings a round.
      if (state.logger.isLevelEnabled("debug")) state.logger.debug({ round_id: rr.round.roundId, resumed, candidates: claimedAgents, answered: answered.map((a) => a.agentId), agents: agents.map((a) => `${a.agentId}:${a.load}/${a.freeSlots}`), tasks: tasks.map((t) => t.taskId), planned: plan.planned.map((p) => `${p.taskId}->${p.leader}`) }, "round plan");
      for (const move of plan.adjustments) await parts.reservations.adjustResources(move, rr.round.roundId);
      if (abandoned()) return;
      if (plan.planned.length === 0) return giveUp(plan.unplaced[0]?.reason ?? "nothing could be placed", "tasks wait for capacity");
      parts.book.moveRound(rr, "plan_ready", `${plan.planned.length} tasks placed, ${plan.unplaced.length} waiting`);
      // Step 5: distribute the directives.
      for (const planned of plan.planned) {
        const rt = state.tasks.get(planned.taskId)!;
        if (rt.task.state !== TaskState.PENDING) continue;
        const member = planned.members[0]!;
        const sent =
          planned.action === "form_coalition"
            ? await parts.coalitions.assignCoalition(rt, planned.members, planned.leader, rr.round.roundId)
            : await parts.assignments.assign(rt, state.agentsById.get(member.agentId)!, member.resources, rr.round.roundId);
        if (abandoned()) return;
        if (!sent) continue;
        rr.replan.delete(planned.taskId);
        if (!rr.open.has(planned.taskId)) {
          rr.open.add(planned.taskId);
          rr.round.taskIds.push(planned.taskId);
        }
        for (const m of planned.members) if (!rr.round.agentIds.includes(m.agentId)) rr.round.agentIds.push(m.agentId);
        state.taskRound.set(planned.taskId, rr.round.roundId);
        rr.directives += planned.members.length;
      }
      // Step 6: monitoring, until every task of the round has ended.
      parts.book.moveRound(rr, "execution_started", `${rr.directives} directives sent`);
      if (rr.replan.size > 0) parts.book.moveRound(rr, "adjustment_needed", `${rr.replan.size} of its tasks still to place`);
      else if (rr.open.size === 0) {
        parts.book.moveRound(rr, "completion", "nothing to monitor");
        parts.book.finishRound(rr, true);
      }
    } catch (err) {
      state.logger.error({ err, round_id: rr.round.roundId }, "coordination round failed");
      if (rr.round.state === CoordinationState.COORDINATING) giveUp((err as Error).message, "the next state change tries again");
    } finally {
      rr.planningNow = false;
      for (const id of claimedAgents) state.claimedAgents.delete(id);
      for (const id of claimedTasks) state.claimedTasks.delete(id);
      if (state.replanRequested) {
        state.replanRequested = false;
        requestSchedule("replan");
      }
    }
  }

  /**
   * Step 2, status collection, from the synced view: agents whose status is at most a sync
   * interval old are taken as they are; only the others are asked, each with a deadline.
   */
  async function collectStatus(agents: AgentRuntime[], roundId: string): Promise<Array<AgentRuntime & { utilization?: number }>> {
    const timeoutMs = Math.min(config.session.statusTimeoutMs, config.session.ackTimeoutMs);
    const now = state.now();
    const answered: Array<AgentRuntime & { utilization?: number }> = [];
    const stale: AgentRuntime[] = [];
    // 0 turns the synced view off: every round asks every agent, as the spec's diagram draws it.
    const sync = config.session.syncIntervalMs;
    const fresh = (a: AgentRuntime) => !!a.session && sync > 0 && (a.pushesStatus || now - a.statusAt <= sync);
    for (const a of agents) (fresh(a) ? answered : stale).push(a);
    if (stale.length === 0) return answered;
    const results = await Promise.allSettled(stale.map((a) => (a.session ? a.session.requestStatus(timeoutMs, undefined, roundId) : Promise.reject(unavailable("no session")))));
    results.forEach((r, i) => {
      const agent = stale[i]!;
      // The answer's utilization was recorded by the report router as it arrived.
      if (r.status === "fulfilled") answered.push(agent);
      else if ((r.reason as BatonError).code === Code.DEADLINE_EXCEEDED && agent.state !== AgentState.OFFLINE) parts.registry.markOffline(agent, `agent_unavailable: no answer to a status request within ${timeoutMs} ms`);
    });
    return answered;
  }

  return { requestSchedule };
}
