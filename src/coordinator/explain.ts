import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AgentExplanationSchema,
  ExplainTaskResponseSchema,
  ObstacleKind,
  ObstacleSchema,
  TaskState,
  type AgentExplanation,
  type ExplainTaskResponse,
  type Obstacle,
  type Task,
} from "../../gen/baton/v1/control_pb.js";
import type { ResourceState } from "../../gen/baton/v1/resource_manager_pb.js";
import { amountNeeded, capacityOf, resourceCovers, resourceMatches, taskFits, type FitFailure, type FitResourceRequest } from "../planner/index.js";
import type { CoordinatorState } from "./coordinator-state.js";
import { agentUnavailability, fitAgent, fitTask, isCoalition, type AgentUnavailability } from "./plan-input.js";
import type { AgentRuntime, TaskRuntime } from "./runtime.js";

/** What an explanation is made from: a snapshot, so the explanation is a pure function of it. */
export interface ExplainInput {
  task: TaskRuntime;
  /** Every agent known. */
  agents: AgentRuntime[];
  /** What each agent offers and what is reserved on it (the Resource Manager's answer). */
  resources: ResourceState[];
  now: number;
  /** The round the task is in, or "". */
  roundId: string;
  /** Whether a round is planning it at this moment. */
  planningNow: boolean;
  /** For each directive of the task's current attempt: its agent and coalition role ("" for assign_task). */
  roles: Map<string, string>;
}

const AGENT_OBSTACLES: Record<AgentUnavailability, [ObstacleKind, string]> = {
  offline: [ObstacleKind.OFFLINE, "offline (agent_unavailable)"],
  not_connected: [ObstacleKind.NOT_CONNECTED, "no session open"],
  draining: [ObstacleKind.DRAINING, "draining: it takes no new work"],
  breaker_open: [ObstacleKind.BREAKER_OPEN, "its circuit breaker is refusing deliveries"],
  no_free_slot: [ObstacleKind.NO_FREE_SLOT, "every in-flight slot is taken"],
};

function fitObstacle(f: FitFailure): Obstacle {
  switch (f.kind) {
    case "excluded":
      return create(ObstacleSchema, { kind: ObstacleKind.EXCLUDED, detail: "it rejected this task before; the task never goes back to it" });
    case "not_targeted":
      return create(ObstacleSchema, { kind: ObstacleKind.NOT_TARGETED, detail: `the task's target is agent ${f.wanted}`, wanted: f.wanted });
    case "label_mismatch":
      return create(ObstacleSchema, {
        kind: ObstacleKind.LABEL_MISMATCH,
        detail: `label ${f.label}: the task wants ${f.wanted}, the agent ${f.actual === undefined ? "has no such label" : `has ${f.actual}`}`,
        label: f.label,
        wanted: f.wanted,
        actual: f.actual ?? "",
      });
    case "capability_missing":
      return create(ObstacleSchema, { kind: ObstacleKind.CAPABILITY_MISSING, detail: `lacks capabilit${f.missing.length > 1 ? "ies" : "y"} ${f.missing.join(", ")}`, missing: f.missing });
    case "role_missing":
      return create(ObstacleSchema, { kind: ObstacleKind.ROLE_MISSING, detail: `has none of the coalition's roles (${f.missing.join(", ")})`, missing: f.missing });
  }
}

/** The requests an agent cannot cover with what it has free, each with by how much (the planner's resource rules). */
function resourceObstacles(requests: FitResourceRequest[], offered: ResourceState[]): Obstacle[] {
  const out: Obstacle[] = [];
  for (const req of requests) {
    let best: { needed: number; free: number } | undefined;
    let covered = false;
    for (const s of offered) {
      const r = { resourceId: s.resource!.resourceId, kind: s.resource!.kind, capacity: s.resource!.capacity };
      if (!resourceMatches(r, req)) continue;
      const free = Math.max(0, capacityOf(r) - s.reserved);
      if (resourceCovers(r, free, req)) {
        covered = true;
        break;
      }
      const needed = amountNeeded(r, req);
      if (!best || needed - free < best.needed - best.free) best = { needed, free };
    }
    if (covered) continue;
    const needed = best?.needed ?? (req.amount > 0 ? req.amount : 1);
    const free = best?.free ?? 0;
    const what = req.resourceId ? `resource ${req.resourceId}` : `a ${req.kind} resource`;
    out.push(
      create(ObstacleSchema, {
        kind: ObstacleKind.RESOURCE_SHORT,
        detail: best ? `${what}: needs ${needed}, ${free} free (short by ${needed - free})` : `offers no ${req.resourceId ? `resource ${req.resourceId}` : `${req.kind} resource`}`,
        shortfall: { resourceId: req.resourceId ?? "", kind: req.kind ?? "", needed, free, shortBy: needed - free },
      }),
    );
  }
  return out;
}

/** An obstacle as the summary counts it: agents short of the same thing count together, whatever their figures. */
function tallyKey(o: Obstacle): string {
  switch (o.kind) {
    case ObstacleKind.NO_FREE_SLOT:
      return "no free slot";
    case ObstacleKind.RESOURCE_SHORT:
      return `short of ${o.shortfall?.resourceId ? `resource ${o.shortfall.resourceId}` : `${o.shortfall?.kind} resources`}`;
    case ObstacleKind.CAPABILITY_MISSING:
      return `lacking ${o.missing.join(", ")}`;
    case ObstacleKind.LABEL_MISMATCH:
      return `not matching label ${o.label}=${o.wanted}`;
    case ObstacleKind.NOT_TARGETED:
      return `not the target ${o.wanted}`;
    case ObstacleKind.EXCLUDED:
      return "rejected it before";
    case ObstacleKind.ROLE_MISSING:
      return "none of the coalition's roles";
    case ObstacleKind.DRAINING:
      return "draining";
    case ObstacleKind.BREAKER_OPEN:
      return "breaker open";
    case ObstacleKind.OFFLINE:
      return "offline";
    default:
      return "not connected";
  }
}

const STATE_WORDS: Partial<Record<TaskState, string>> = {
  [TaskState.ASSIGNED]: "assigned to",
  [TaskState.RUNNING]: "running on",
  [TaskState.SUCCEEDED]: "succeeded on",
};

/** Why a task waits (every agent and what keeps it from the task), or where it went and why: a pure function of the snapshot. */
export function explain(input: ExplainInput): ExplainTaskResponse {
  const rt = input.task;
  const task: Task = rt.task;
  const spec = task.spec!;
  const { task: fit, roles } = fitTask(rt);
  const requests: FitResourceRequest[] = spec.resources.map((r) => ({ ...(r.resourceId ? { resourceId: r.resourceId } : {}), ...(r.kind ? { kind: r.kind } : {}), amount: r.amount }));
  const offered = new Map<string, ResourceState[]>();
  for (const s of input.resources) if (s.resource) offered.set(s.agentId, [...(offered.get(s.agentId) ?? []), s]);
  const placed = task.state === TaskState.ASSIGNED || task.state === TaskState.RUNNING;
  const chosenIds = new Set(placed ? task.assignedAgents : task.state === TaskState.SUCCEEDED ? (task.attempts.at(-1)?.agents ?? []) : []);
  const agents: AgentExplanation[] = [];
  const tally = new Map<string, number>();
  let eligibleCount = 0;
  for (const a of [...input.agents].sort((x, y) => (x.agentId < y.agentId ? -1 : x.agentId > y.agentId ? 1 : 0))) {
    const chosen = chosenIds.has(a.agentId);
    const obstacles: Obstacle[] = [];
    const failures: FitFailure[] = [];
    taskFits(fitAgent(a), fit, roles, failures);
    obstacles.push(...failures.map(fitObstacle));
    // The chosen agents hold the task's slot and resources: judged against those, they would seem full.
    if (!chosen) {
      const unavailable = agentUnavailability(a);
      if (unavailable) {
        const [kind, detail] = AGENT_OBSTACLES[unavailable];
        obstacles.unshift(create(ObstacleSchema, { kind, detail: kind === ObstacleKind.NO_FREE_SLOT ? `${detail} (${a.outbox.size} of ${a.maxInFlight})` : detail }));
      }
      obstacles.push(...resourceObstacles(requests, offered.get(a.agentId) ?? []));
    }
    const eligible = obstacles.length === 0;
    if (eligible && !chosen) eligibleCount++;
    for (const key of new Set(obstacles.map(tallyKey))) tally.set(key, (tally.get(key) ?? 0) + 1);
    agents.push(
      create(AgentExplanationSchema, {
        agentId: a.agentId,
        state: a.state,
        eligible,
        chosen,
        obstacles,
        inFlight: a.outbox.size,
        maxInFlight: a.maxInFlight,
        reason: chosen ? whyChosen(a, input, fit.requiredCapabilities) : "",
      }),
    );
  }
  const response = create(ExplainTaskResponseSchema, { task, strategy: "least_loaded", agents, eligibleCount, roundId: input.roundId, summary: "" });
  if (task.state === TaskState.PENDING && rt.notBefore > input.now) response.notBefore = timestampFromMs(rt.notBefore);
  response.summary = summarize(input, response, tally, chosenIds);
  return response;
}

function whyChosen(a: AgentRuntime, input: ExplainInput, capabilities: readonly string[]): string {
  const spec = input.task.task.spec!;
  const role = input.roles.get(a.agentId) ?? "";
  const rules = [
    capabilities.length ? `has ${capabilities.join(", ")}` : "",
    spec.target?.agentId ? "is the task's target" : "",
    Object.keys(spec.target?.labels ?? {}).length ? `matches labels ${Object.entries(spec.target!.labels).map(([k, v]) => `${k}=${v}`).join(", ")}` : "",
    spec.resources.length ? "had the resources free" : "",
  ].filter(Boolean);
  const fits = rules.length ? `it ${rules.join(", ")}` : "it fit every rule";
  const by = input.roundId ? `round ${input.roundId}` : "the planner";
  const member = role ? `, filling the coalition role ${role}` : isCoalition(spec) ? ", as a member of the coalition" : "";
  return `${fits}, had a free slot, and was the least loaded such agent when ${by} planned (ties go to the lowest id)${member}`;
}

function summarize(input: ExplainInput, r: ExplainTaskResponse, tally: Map<string, number>, chosen: Set<string>): string {
  const { task } = input.task;
  const spec = task.spec!;
  const words = STATE_WORDS[task.state];
  if (words && chosen.size > 0) return `${words} ${[...chosen].join(", ")}${r.roundId ? `, placed by round ${r.roundId}` : ""}`;
  if (task.state !== TaskState.PENDING) return `${TaskState[task.state].toLowerCase()}${task.reason ? `: ${task.reason}` : ""}`;
  if (r.notBefore) return `waiting for its retry delay until ${new Date(input.task.notBefore).toISOString()}`;
  if (input.planningNow) return `being planned by round ${r.roundId || "(starting)"} now`;
  if (input.agents.length === 0) return "waiting: no agent is known";
  const needed = isCoalition(spec) ? Math.max(spec.coalition!.size, spec.coalition!.roles.length) : 1;
  if (r.eligibleCount >= needed) return `${r.eligibleCount} agent${r.eligibleCount === 1 ? "" : "s"} could take it now; the next coordination round places it`;
  const reasons = [...tally.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([why, n]) => `${why}: ${n}`);
  const head = needed > 1 ? `waiting: the coalition needs ${needed} agents, ${r.eligibleCount} could take part` : `waiting: none of the ${input.agents.length} agent${input.agents.length === 1 ? "" : "s"} can take it`;
  return reasons.length ? `${head} (${reasons.join("; ")})` : head;
}

/** Explains one task from the coordinator's state as it is now (ExplainTask). */
export async function explainTask(state: CoordinatorState, rt: TaskRuntime): Promise<ExplainTaskResponse> {
  const agents = [...state.agentsById.values()];
  const taskId = rt.task.spec!.taskId;
  const resources = rt.task.spec!.resources.length > 0 ? await state.inventory.query({ agentIds: agents.map((a) => a.agentId) }) : [];
  const roles = new Map<string, string>();
  for (const id of rt.directives) {
    const d = state.directives.get(id);
    if (!d) continue;
    const params = d.directive?.parameters?.kind;
    roles.set(d.agentId, params?.case === "formCoalition" ? params.value.role : "");
  }
  return explain({ task: rt, agents, resources, now: state.now(), roundId: state.taskRound.get(taskId) ?? "", planningNow: state.claimedTasks.has(taskId), roles });
}
