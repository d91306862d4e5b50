import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Action, AgentState } from "../../gen/baton/v1/common_pb.js";
import type { Task, TaskSpec } from "../../gen/baton/v1/control_pb.js";
import { CoordinationDirectiveSchema, type CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import { taskFits, type FitAgent, type FitTask, type PlanAgent, type PlanTask } from "../planner/index.js";
import type { ResourceManagerPort } from "./ports.js";
import type { AgentRuntime, TaskRuntime } from "./runtime.js";

// What a round feeds the planner and what it sends from the plan: plain functions of their
// input (no state, no I/O), so the planner sees exactly what these say.

/** Orders ids by code unit, as the journal's keys are ordered. */
export const compareIds = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The spec's name of a directive's action, as round figures are keyed. */
export function actionOf(d: CoordinationDirective): string {
  return d.parameters?.kind.case === "formCoalition" ? "form_coalition" : d.parameters?.kind.case === "adjustResources" ? "adjust_resources" : "assign_task";
}

/** When a directive was issued, ms since the epoch; 0 when it carries no timestamp. */
export function timestampMsOf(d: CoordinationDirective): number {
  return d.timestamp ? Number(d.timestamp.seconds) * 1000 + d.timestamp.nanos / 1e6 : 0;
}

/** Whether a task needs several agents. */
export function isCoalition(spec: TaskSpec): boolean {
  return !!spec.coalition && Math.max(spec.coalition.size, spec.coalition.roles.length) >= 2;
}

/** The assign_task directive of a task for one agent. */
export function directiveFor(task: Task, agentId: string, correlationId: string, resources: string[], timestamp: Timestamp): CoordinationDirective {
  const spec = task.spec!;
  return create(CoordinationDirectiveSchema, {
    directiveId: randomUUID(),
    timestamp,
    targetAgent: agentId,
    action: Action.ASSIGN_TASK,
    correlationId,
    parameters: {
      kind: {
        case: "assignTask",
        value: {
          taskId: spec.taskId,
          priority: spec.priority,
          requiredCapabilities: spec.requiredCapabilities,
          resources,
          ...(spec.input ? { input: spec.input } : {}),
          ...(spec.deadline ? { deadline: spec.deadline } : {}),
        },
      },
    },
  });
}

/** The form_coalition directives of a task, one per member, in the members' order. */
export function coalitionDirectives(
  spec: TaskSpec,
  options: { coalitionId: string; members: Array<{ agentId: string; role: string; resources: Array<{ resourceId: string }> }>; leader: string; correlationId: string; timeoutMs: number; timestamp: Timestamp },
): CoordinationDirective[] {
  const { coalitionId, members, leader, correlationId, timeoutMs, timestamp } = options;
  return members.map((m) =>
    create(CoordinationDirectiveSchema, {
      directiveId: randomUUID(),
      timestamp,
      targetAgent: m.agentId,
      action: Action.FORM_COALITION,
      correlationId,
      parameters: {
        kind: {
          case: "formCoalition",
          value: { coalitionId, taskId: spec.taskId, members: members.map((x) => x.agentId), leader, role: m.role, formationTimeout: durationFromMs(timeoutMs), resources: m.resources.map((r) => r.resourceId), priority: spec.priority, ...(spec.input ? { input: spec.input } : {}) },
        },
      },
    }),
  );
}

/** Why an agent may take no work now, whatever the task; undefined when it may. */
export type AgentUnavailability = "not_connected" | "offline" | "draining" | "breaker_open" | "no_free_slot";

/** The first reason an agent may take no work now (no session, offline, draining, its breaker refusing, no free slot), or undefined. */
export function agentUnavailability(a: AgentRuntime): AgentUnavailability | undefined {
  if (a.state === AgentState.OFFLINE) return "offline";
  if (!a.session) return "not_connected";
  if (a.draining) return "draining";
  if (!a.breaker.allows) return "breaker_open";
  if (freeSlots(a) <= 0) return "no_free_slot";
  return undefined;
}

/** Directives an agent can still take: its cap minus what it holds, and one probe while its breaker is half-open. */
export function freeSlots(a: AgentRuntime): number {
  const free = a.maxInFlight - a.outbox.size;
  return a.breaker.state === "half_open" ? Math.min(1, free) : free;
}

/** Whether an agent may take work now: a session, not draining or offline, its breaker letting through, a free slot. */
export function isCandidate(a: AgentRuntime): boolean {
  return agentUnavailability(a) === undefined;
}

// An agent's capabilities as a set, made once per Hello rather than once per check (the
// candidate search checks many agents per pass).
const fits = new WeakMap<object, FitAgent>();

/** An agent as the eligibility rules see it. */
export function fitAgent(a: AgentRuntime): FitAgent {
  let fit = fits.get(a.hello);
  if (!fit) fits.set(a.hello, (fit = { agentId: a.agentId, capabilities: new Set(a.hello.capabilities), labels: a.hello.labels }));
  return fit;
}

/** A task as the eligibility rules see it, with the roles a coalition member may fill. */
export function fitTask(rt: TaskRuntime): { readonly task: FitTask; readonly roles: readonly string[] } {
  // Made once per task: the candidate search checks it against every agent it looks at, each
  // pass. Its spec does not change, and `excluded` is the task's own set, read live.
  let fit = fitTasks.get(rt);
  if (!fit) {
    const spec = rt.task.spec!;
    fitTasks.set(rt, (fit = { task: { requiredCapabilities: spec.requiredCapabilities, target: spec.target, excluded: rt.excluded }, roles: isCoalition(spec) ? spec.coalition!.roles : [] }));
  }
  return fit;
}

const fitTasks = new WeakMap<TaskRuntime, { readonly task: FitTask; readonly roles: readonly string[] }>();

/** Below this many candidates a round plans with all of them. */
export const SAMPLE_ABOVE = 64;

/** The agents a round plans with, as the planner sees them: free slots, load and resources. */
export function planAgents(answered: AgentRuntime[], status: Awaited<ReturnType<ResourceManagerPort["query"]>>): PlanAgent[] {
  const byAgent = new Map<string, PlanAgent["resources"]>();
  for (const r of status) {
    const list = byAgent.get(r.agentId) ?? [];
    list.push({ resourceId: r.resource!.resourceId, kind: r.resource!.kind, capacity: r.resource!.capacity, reserved: r.reserved });
    byAgent.set(r.agentId, list);
  }
  const out: PlanAgent[] = [];
  for (const a of answered) {
    if (agentUnavailability(a) !== undefined) continue;
    out.push({ agentId: a.agentId, capabilities: fitAgent(a).capabilities, labels: a.hello.labels, freeSlots: freeSlots(a), load: a.outbox.size, resources: byAgent.get(a.agentId) ?? [] });
  }
  return out;
}

/** An agent that gives resources but takes no task of the round (adjust_resources): no slots. */
export function donorAgent(d: AgentRuntime, status: Awaited<ReturnType<ResourceManagerPort["query"]>>): PlanAgent {
  return { agentId: d.agentId, capabilities: fitAgent(d).capabilities, labels: d.hello.labels, freeSlots: 0, load: d.outbox.size, resources: status.filter((r) => r.agentId === d.agentId).map((r) => ({ resourceId: r.resource!.resourceId, kind: r.resource!.kind, capacity: r.resource!.capacity, reserved: r.reserved })) };
}

/** When a task was created, ms with its sub-millisecond part (tasks of one millisecond keep their order): its age in the planning order. */
export function createdMs(rt: TaskRuntime): number {
  const at = rt.task.createdAt;
  return at ? Number(at.seconds) * 1000 + at.nanos / 1e6 : 0;
}

/** A task as the planner sees it. */
export function planTask(rt: TaskRuntime): PlanTask {
  // Under load every pass plans the whole backlog: a task's planner view (and the shape the
  // planner keys on it) is built once. Only its exclusions change after submit, so a task
  // with none keeps its view; one with some (rare: an agent refused it) is built anew.
  if (rt.excluded.size > 0) return buildPlanTask(rt);
  let view = planViews.get(rt);
  if (!view) planViews.set(rt, (view = buildPlanTask(rt)));
  return view;
}

const planViews = new WeakMap<TaskRuntime, PlanTask>();

function buildPlanTask(rt: TaskRuntime): PlanTask {
  const spec = rt.task.spec!;
  return {
    taskId: spec.taskId,
    priority: spec.priority,
    submitter: rt.task.submitter,
    order: createdMs(rt),
    requiredCapabilities: spec.requiredCapabilities,
    resources: spec.resources.map((r) => ({ ...(r.resourceId ? { resourceId: r.resourceId } : {}), ...(r.kind ? { kind: r.kind } : {}), amount: r.amount })),
    target: { agentId: spec.target?.agentId ?? "", labels: spec.target?.labels ?? {} },
    excluded: rt.excluded,
    ...(isCoalition(spec) ? { coalition: { roles: spec.coalition!.roles, size: Math.max(spec.coalition!.size, spec.coalition!.roles.length) } } : {}),
  };
}
