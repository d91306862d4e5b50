// The rules that decide whether an agent may take a task, in one place: the planner, a
// round's choice of candidates and Control.ExplainTask all apply these, so an explanation
// can never disagree with what was planned.

/** An agent as the eligibility rules see it. */
export interface FitAgent {
  agentId: string;
  capabilities: ReadonlySet<string>;
  labels: Readonly<Record<string, string>>;
}

/** A task as the eligibility rules see it. */
export interface FitTask {
  requiredCapabilities: readonly string[];
  target?: { agentId?: string; labels?: Readonly<Record<string, string>> } | undefined;
  /** Agents it must not go to (they rejected it). */
  excluded?: ReadonlySet<string>;
}

/** One rule an agent fails for a task. */
export type FitFailure =
  | { kind: "excluded" }
  | { kind: "not_targeted"; wanted: string }
  | { kind: "label_mismatch"; label: string; wanted: string; actual: string | undefined }
  | { kind: "capability_missing"; missing: string[] }
  | { kind: "role_missing"; missing: string[] };

/** A request for part of a resource, by id or by kind; amount 0 asks for a whole resource. */
export interface FitResourceRequest {
  resourceId?: string;
  kind?: string;
  amount: number;
}

/** A resource an agent offers: capacity 0 means an indivisible resource of capacity 1. */
export interface FitResource {
  resourceId: string;
  kind: string;
  capacity: number;
}

const patterns = new Map<string, string[]>();

/** Whether a label value matches a pattern with * wildcards ("gpu-*"). */
export function labelMatches(pattern: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (!pattern.includes("*")) return pattern === value;
  let parts = patterns.get(pattern);
  if (!parts) patterns.set(pattern, (parts = pattern.split("*")));
  const head = parts[0]!;
  const tail = parts[parts.length - 1]!;
  if (value.length < head.length + tail.length || !value.startsWith(head) || !value.endsWith(tail)) return false;
  let at = head.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const found = value.indexOf(parts[i]!, at);
    if (found < 0) return false;
    at = found + parts[i]!.length;
  }
  return at <= value.length - tail.length;
}

/**
 * Whether an agent may take a task (or, with `roles`, one of a coalition's roles): not
 * excluded, the target's agent and labels, the capabilities, the role. Without `out` it
 * stops at the first rule failed (the planner's hot path); with `out` it checks every rule
 * and collects each failure (an explanation).
 */
export function taskFits(agent: FitAgent, task: FitTask, roles: readonly string[] = [], out?: FitFailure[]): boolean {
  let ok = true;
  if (task.excluded?.has(agent.agentId)) {
    if (!out) return false;
    ok = false;
    out.push({ kind: "excluded" });
  }
  const target = task.target;
  if (target?.agentId && target.agentId !== agent.agentId) {
    if (!out) return false;
    ok = false;
    out.push({ kind: "not_targeted", wanted: target.agentId });
  }
  if (target?.labels) {
    for (const label in target.labels) {
      const wanted = target.labels[label]!;
      if (labelMatches(wanted, agent.labels[label])) continue;
      if (!out) return false;
      ok = false;
      out.push({ kind: "label_mismatch", label, wanted, actual: agent.labels[label] });
    }
  }
  let missing: string[] | undefined;
  for (const c of task.requiredCapabilities) {
    if (agent.capabilities.has(c)) continue;
    if (!out) return false;
    (missing ??= []).push(c);
  }
  if (missing) {
    ok = false;
    out!.push({ kind: "capability_missing", missing });
  }
  // A coalition member fills one of the roles asked for; a role is a capability ("" is a plain member).
  let named = false;
  let filled = false;
  for (const r of roles) {
    if (!r) continue;
    named = true;
    if (agent.capabilities.has(r)) {
      filled = true;
      break;
    }
  }
  if (named && !filled) {
    if (!out) return false;
    ok = false;
    out.push({ kind: "role_missing", missing: [...new Set(roles.filter(Boolean))] });
  }
  return ok;
}

/** A resource's capacity, 1 for an indivisible one. */
export const capacityOf = (r: FitResource): number => (r.capacity > 0 ? r.capacity : 1);

/** Whether a resource is the one (or of the kind) a request names. */
export function resourceMatches(r: FitResource, req: FitResourceRequest): boolean {
  return req.resourceId ? r.resourceId === req.resourceId : r.kind === req.kind;
}

/** How much of a matching resource a request takes: its amount, or all of it for amount 0. */
export const amountNeeded = (r: FitResource, req: FitResourceRequest): number => (req.amount > 0 ? req.amount : capacityOf(r));

/** Whether `free` of a matching resource covers a request (a whole-resource request needs it all free). */
export function resourceCovers(r: FitResource, free: number, req: FitResourceRequest): boolean {
  return free + 1e-9 >= amountNeeded(r, req) && (req.amount > 0 || free >= capacityOf(r));
}
