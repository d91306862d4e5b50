import { amountNeeded, capacityOf, labelMatches, resourceCovers, resourceMatches, taskFits } from "./eligibility.js";

/** A resource an agent offers, with what is already reserved on it. */
export interface PlanResource {
  resourceId: string;
  kind: string;
  /** Capacity in the kind's unit; 0 means an indivisible resource of capacity 1. */
  capacity: number;
  reserved: number;
}

/** An agent as the planner sees it. */
export interface PlanAgent {
  agentId: string;
  capabilities: ReadonlySet<string>;
  labels: Readonly<Record<string, string>>;
  /** Directives it can still take (its in-flight cap minus what it holds). */
  freeSlots: number;
  /** Directives it holds. */
  load: number;
  resources: PlanResource[];
  /** 0..1 from the performance monitor, for adjust_resources. */
  utilization?: number;
}

/** Part of a resource, by id or by kind; amount 0 asks for a whole resource. */
export interface PlanResourceRequest {
  resourceId?: string;
  kind?: string;
  amount: number;
}

/** A task as the planner sees it. */
export interface PlanTask {
  taskId: string;
  /** Higher first. */
  priority: number;
  /** Who submitted it: fairness is across submitters. */
  submitter: string;
  /** Arrival order (older first). */
  order: number;
  requiredCapabilities: string[];
  /** Resources it needs (each coalition member needs them too). */
  resources: PlanResourceRequest[];
  target?: { agentId?: string; labels?: Readonly<Record<string, string>> };
  /** Agents it must not go to (they rejected it). */
  excluded?: ReadonlySet<string>;
  /** For form_coalition: one member per role (a role is a capability); `size` beyond the roles adds plain members. */
  coalition?: { roles: string[]; size: number };
}

/** How to choose among eligible agents. */
export type Strategy = "least_loaded" | "bin_packing";

/** The planner's input; the same input always gives the same plan. */
export interface PlanInput {
  tasks: PlanTask[];
  agents: PlanAgent[];
  strategy?: Strategy;
  /** Utilization at or above which an agent is overloaded (adjust_resources). Default 0.85. */
  overloaded?: number;
  /** Utilization at or below which an agent is idle. Default 0.25. */
  idle?: number;
}

/** Where one member of a placement goes. */
export interface Placement {
  agentId: string;
  /** The member's coalition role, if any. */
  role: string;
  resources: Array<{ resourceId: string; amount: number }>;
}

/** A task placed: assign_task (one member) or form_coalition (all or nothing). */
export interface PlannedTask {
  taskId: string;
  action: "assign_task" | "form_coalition";
  members: Placement[];
  leader: string;
}

/** A reservation moved from an idle agent to an overloaded one (adjust_resources). */
export interface ResourceMove {
  from: string;
  to: string;
  resourceId: string;
  kind: string;
  amount: number;
  /** The task that needed it. */
  forTask: string;
}

/** The plan. */
export interface Plan {
  planned: PlannedTask[];
  unplaced: Array<{ taskId: string; reason: string }>;
  adjustments: ResourceMove[];
}

interface AgentState {
  agent: PlanAgent;
  /** Position in the sorted agent list. */
  idx: number;
  load: number;
  free: number;
  /** Free amount per resource, in the agent's resource order (sorted by id). */
  resourceFree: number[];
  resources: PlanResource[];
}

const cap = capacityOf;
const NO_ROLES: readonly string[] = [];

export { labelMatches };

/** Tasks in the order they are planned: priority, then round-robin across submitters, then age. */
export function planningOrder(tasks: PlanTask[]): PlanTask[] {
  const byAge = [...tasks].sort((a, b) => a.order - b.order || (a.taskId < b.taskId ? -1 : 1));
  // A submitter's k-th task (within its priority) competes with other submitters' k-th: a flood from one does not starve others.
  const rank = new Map<PlanTask, number>();
  const seen = new Map<string, number>();
  for (const t of byAge) {
    const key = `${t.priority}\u0000${t.submitter}`;
    const k = seen.get(key) ?? 0;
    rank.set(t, k);
    seen.set(key, k + 1);
  }
  return byAge.sort((a, b) => b.priority - a.priority || rank.get(a)! - rank.get(b)! || a.order - b.order || (a.taskId < b.taskId ? -1 : 1));
}

/**
 * The plan generator: a pure function of (pending tasks, agents, resources, metrics).
 * Filters agents by capability, target agent and labels, exclusions, free slots and free
 * resources; scores least loaded (or bin-packing); places coalitions all or nothing; and
 * proposes moving idle agents' resources to overloaded ones for tasks left unplaced.
 */
export function generatePlan(input: PlanInput): Plan {
  const strategy = input.strategy ?? "least_loaded";
  const agents = [...input.agents].sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));
  const states: AgentState[] = agents.map((agent, idx) => {
    const resources = [...agent.resources].sort((a, b) => (a.resourceId < b.resourceId ? -1 : 1));
    return { agent, idx, load: agent.load, free: agent.freeSlots, resources, resourceFree: resources.map((r) => Math.max(0, cap(r) - r.reserved)) };
  });
  const byId = new Map(states.map((s) => [s.agent.agentId, s]));
  // Agents with free slots by load: the least (or most) loaded eligible agent is found
  // without scanning all. Sets keep insertion order, so iteration stays deterministic.
  const levels: Array<Set<AgentState> | undefined> = [];
  const place = (s: AgentState) => {
    if (s.free > 0) (levels[s.load] ??= new Set()).add(s);
  };
  const unplace = (s: AgentState) => levels[s.load]?.delete(s);
  for (const s of states) place(s);

  const fits = (s: AgentState, task: PlanTask, role: string): boolean => s.free > 0 && taskFits(s.agent, task, role ? [role] : NO_ROLES);

  /** Reserves a task's resources on an agent, or returns undefined (nothing reserved). */
  const reserve = (s: AgentState, requests: PlanResourceRequest[]): Placement["resources"] | undefined => {
    const out: Placement["resources"] = [];
    const undo: Array<[number, number]> = [];
    for (const req of requests) {
      let chosen = -1;
      for (let i = 0; i < s.resources.length; i++) {
        const r = s.resources[i]!;
        if (!resourceMatches(r, req) || !resourceCovers(r, s.resourceFree[i]!, req)) continue;
        // Bin-packing takes the tightest fit; least-loaded the first in id order.
        if (chosen < 0 || (strategy === "bin_packing" && s.resourceFree[i]! < s.resourceFree[chosen]!)) chosen = i;
        if (strategy !== "bin_packing") break;
      }
      if (chosen < 0) {
        for (const [i, amount] of undo) s.resourceFree[i]! += amount;
        return undefined;
      }
      const r = s.resources[chosen]!;
      const amount = amountNeeded(r, req);
      s.resourceFree[chosen]! -= amount;
      undo.push([chosen, amount]);
      out.push({ resourceId: r.resourceId, amount });
    }
    return out;
  };
  const release = (s: AgentState, resources: Placement["resources"]) => {
    for (const { resourceId, amount } of resources) {
      const i = s.resources.findIndex((r) => r.resourceId === resourceId);
      s.resourceFree[i]! += amount;
    }
  };

  // Per task shape and role, the agents that can never take it again in this plan (the
  // same monotonicity as above): each is checked once per shape, not once per task.
  const dead = new Map<string, Uint8Array>();
  /** The best eligible agent for one member, its resources reserved and a slot taken. */
  const choose = (task: PlanTask, shape: string, role: string, taken: Set<AgentState> | undefined): Placement | undefined => {
    const key = `${shape}\u0000${role}`;
    let gone = dead.get(key);
    if (!gone) dead.set(key, (gone = new Uint8Array(states.length)));
    const order = strategy === "bin_packing" ? [...levels.keys()].reverse() : levels.keys();
    for (const level of order) {
      const bucket = levels[level];
      if (!bucket) continue;
      for (const s of bucket) {
        if (gone[s.idx] || taken?.has(s)) continue;
        if (!fits(s, task, role)) {
          gone[s.idx] = 1;
          continue;
        }
        const resources = reserve(s, task.resources);
        if (!resources) {
          gone[s.idx] = 1;
          continue;
        }
        unplace(s);
        s.load++;
        s.free--;
        place(s);
        taken?.add(s);
        return { agentId: s.agent.agentId, role, resources };
      }
    }
    return undefined;
  };
  const unchoose = (p: Placement) => {
    const s = byId.get(p.agentId)!;
    release(s, p.resources);
    unplace(s);
    s.load--;
    s.free++;
    place(s);
  };

  const planned: PlannedTask[] = [];
  const unplaced: Plan["unplaced"] = [];
  // Planning only consumes slots and resources (a failed coalition restores an earlier
  // state), so a task shape that found no place will find none later in this plan.
  const failed = new Map<string, string>();
  for (const task of planningOrder(input.tasks)) {
    const shape = shapeOf(task);
    const known = failed.get(shape);
    if (known !== undefined) {
      unplaced.push({ taskId: task.taskId, reason: known });
      continue;
    }
    const roles = task.coalition ? [...task.coalition.roles, ...Array<string>(Math.max(0, task.coalition.size - task.coalition.roles.length)).fill("")] : [""];
    // Coalition members must be distinct agents; a single assignment needs no bookkeeping.
    const taken = task.coalition ? new Set<AgentState>() : undefined;
    const members: Placement[] = [];
    for (const role of roles) {
      const member = choose(task, shape, role, taken);
      if (!member) break;
      members.push(member);
    }
    if (members.length === roles.length) {
      planned.push({ taskId: task.taskId, action: task.coalition ? "form_coalition" : "assign_task", members, leader: members[0]!.agentId });
    } else {
      // All or nothing: a coalition that cannot be completed holds nothing.
      members.forEach(unchoose);
      const reason = whyUnplaced(task, states, roles);
      failed.set(shape, reason);
      unplaced.push({ taskId: task.taskId, reason });
    }
  }
  return { planned, unplaced, adjustments: adjustments(input, states, unplaced) };
}

const shapes = new WeakMap<PlanTask, string>();

/** What decides where a task can go; tasks of one shape are interchangeable to the planner. */
function shapeOf(task: PlanTask): string {
  let key = shapes.get(task);
  if (key !== undefined) return key;
  // \u0001 and \u0002 separate fields and items: they cannot occur in ids, capabilities or labels.
  const caps = task.requiredCapabilities.length > 1 ? [...task.requiredCapabilities].sort().join("\u0002") : (task.requiredCapabilities[0] ?? "");
  let res = "";
  for (const r of task.resources) res += `${r.resourceId ?? ""}\u0002${r.kind ?? ""}\u0002${r.amount}\u0002`;
  let labels = "";
  if (task.target?.labels) for (const [k, v] of Object.entries(task.target.labels).sort()) labels += `${k}=${v}\u0002`;
  const excluded = task.excluded?.size ? [...task.excluded].sort().join("\u0002") : "";
  const coalition = task.coalition ? `${task.coalition.roles.join("\u0002")}\u0002${task.coalition.size}` : "";
  key = `${caps}\u0001${res}\u0001${task.target?.agentId ?? ""}\u0001${labels}\u0001${excluded}\u0001${coalition}`;
  shapes.set(task, key);
  return key;
}

function whyUnplaced(task: PlanTask, states: AgentState[], roles: string[]): string {
  const capable = states.filter((s) => task.requiredCapabilities.every((c) => s.agent.capabilities.has(c)) && !task.excluded?.has(s.agent.agentId));
  if (capable.length === 0) return `no agent has capabilities [${task.requiredCapabilities.join(", ")}]`;
  if (roles.length > 1) return `coalition of ${roles.length} (${roles.filter(Boolean).join(", ") || "members"}) could not be formed from free agents`;
  return "no eligible agent has a free slot and the resources";
}

function adjustments(input: PlanInput, states: AgentState[], unplaced: Plan["unplaced"]): ResourceMove[] {
  const high = input.overloaded ?? 0.85;
  const low = input.idle ?? 0.25;
  // Only a task asking for a resource by kind can be helped by a move; most ask for none,
  // and a busy round leaves thousands unplaced.
  const byKind = (t: PlanTask) => t.resources.some((r) => r.kind && !r.resourceId);
  if (unplaced.length === 0 || !input.tasks.some(byKind)) return [];
  const tasks = new Map(input.tasks.filter(byKind).map((t) => [t.taskId, t]));
  const idle = states.filter((s) => (s.agent.utilization ?? 0.5) <= low);
  const used = new Set<string>();
  // One move per overloaded agent and kind per plan: rounds adjust gradually.
  const granted = new Set<string>();
  const targetOf = new Map<string, AgentState | undefined>();
  const spent = new Set<string>();
  const moves: ResourceMove[] = [];
  for (const { taskId } of unplaced) {
    const task = tasks.get(taskId);
    if (!task) continue;
    const kinds = task.resources.filter((r) => r.kind && !r.resourceId);
    if (kinds.length === 0) continue;
    // An overloaded agent that could run the task but for its resources gets an idle agent's.
    const shape = shapeOf(task);
    if (!targetOf.has(shape)) targetOf.set(shape, states.find((s) => (s.agent.utilization ?? 0) >= high && task.requiredCapabilities.every((c) => s.agent.capabilities.has(c)) && !task.excluded?.has(s.agent.agentId)));
    const target = targetOf.get(shape);
    if (!target) continue;
    for (const req of kinds) {
      if (granted.has(`${target.agent.agentId}/${req.kind}`) || spent.has(`${req.kind}/${req.amount}`)) continue;
      let found = false;
      for (const s of idle) {
        if (s === target) continue;
        const i = s.resources.findIndex((r, k) => r.kind === req.kind && !used.has(`${s.agent.agentId}/${r.resourceId}`) && s.resourceFree[k]! >= (req.amount > 0 ? req.amount : cap(r)));
        if (i < 0) continue;
        const r = s.resources[i]!;
        used.add(`${s.agent.agentId}/${r.resourceId}`);
        granted.add(`${target.agent.agentId}/${req.kind}`);
        moves.push({ from: s.agent.agentId, to: target.agent.agentId, resourceId: r.resourceId, kind: r.kind, amount: req.amount > 0 ? req.amount : cap(r), forTask: taskId });
        found = true;
        break;
      }
      // Idle resources only get used up: a kind with none left now has none later.
      if (!found) spent.add(`${req.kind}/${req.amount}`);
    }
  }
  return moves;
}
