import { taskFits } from "../planner/index.js";
import { fitAgent, fitTask, isCandidate, isCoalition, SAMPLE_ABOVE } from "./plan-input.js";
import type { AgentRuntime, TaskRuntime } from "./runtime.js";

/** What a scheduling pass found for a set of tasks. */
export interface CandidateSearch {
  /** Agents the round may claim: free now, not claimed by another round, able to run one of the tasks. */
  candidates: AgentRuntime[];
  /** Whether any agent free now could run one of the tasks, claimed by another round or not. */
  usable: boolean;
}

function runs(a: AgentRuntime, rt: TaskRuntime): boolean {
  const { task, roles } = fitTask(rt);
  return taskFits(fitAgent(a), task, roles);
}

// Agents a search looks at before it settles for busy ones.
const SCAN_AT_LEAST = 64;

const load = (a: AgentRuntime) => a.outbox.size / Math.max(1, a.maxInFlight);

// Tasks with the same key fit the same agents: one search serves them all.
function fitKey(rt: TaskRuntime): string {
  const spec = rt.task.spec!;
  // A task some agent rejected has an exclusion list of its own.
  if (rt.excluded.size > 0) return `task:${spec.taskId}`;
  // Made once per task (its spec does not change): under load each pass searches for the whole backlog.
  let key = fitKeys.get(rt);
  if (key === undefined) fitKeys.set(rt, (key = JSON.stringify([spec.requiredCapabilities, spec.target?.agentId ?? "", spec.target?.labels ?? {}, isCoalition(spec) ? spec.coalition!.roles : []])));
  return key;
}

const fitKeys = new WeakMap<TaskRuntime, string>();

/**
 * The candidates for a pass's tasks, at a cost that follows the tasks rather than the
 * agents connected. Up to SAMPLE_ABOVE agents, every one is looked at. Beyond, tasks that
 * fit the same agents are searched for together: round the ring of agents from where the
 * last search stopped (`ring.cursor` moves on, so work spreads over many agents), taking
 * the first idle agents that can run them, enough for each task twice over (a coalition's
 * size twice over). When too few are idle, the least loaded of the able agents seen are
 * taken once enough of them have been seen (at least 64 looked at); only tasks that few
 * agents can run make the search go round the whole ring.
 */
export function findCandidates(ring: { agents: readonly AgentRuntime[]; cursor: number }, tasks: TaskRuntime[], claimed: ReadonlySet<string>): CandidateSearch {
  const agents = ring.agents;
  if (agents.length <= SAMPLE_ABOVE) {
    const usable = agents.filter((a) => isCandidate(a) && tasks.some((rt) => runs(a, rt)));
    return { candidates: usable.filter((a) => !claimed.has(a.agentId)), usable: usable.length > 0 };
  }
  const groups = new Map<string, TaskRuntime[]>();
  for (const rt of tasks) {
    const key = fitKey(rt);
    const group = groups.get(key);
    if (group) group.push(rt);
    else groups.set(key, [rt]);
  }
  const chosen = new Set<AgentRuntime>();
  let usable = false;
  for (const group of groups.values()) {
    const rt = group[0]!;
    const spec = rt.task.spec!;
    const each = Math.max(8, 2 * (isCoalition(spec) ? Math.max(spec.coalition!.size, spec.coalition!.roles.length) : 1));
    const wanted = Math.min(agents.length, each * group.length);
    let found = 0;
    const busy: AgentRuntime[] = [];
    // Past this many agents looked at, busy ones will do: the least loaded of a sample
    // (power of k choices), not of every agent, unless too few could run the tasks at all.
    const enough = Math.max(SCAN_AT_LEAST, 4 * wanted);
    for (let seen = 0; seen < agents.length && found < wanted && !(seen >= enough && found + busy.length >= wanted); seen++) {
      const a = agents[ring.cursor]!;
      ring.cursor = (ring.cursor + 1) % agents.length;
      // A full agent is the common refusal under load: checked before the rules that cost more.
      if (a.outbox.size >= a.maxInFlight || !isCandidate(a) || !runs(a, rt)) continue;
      usable = true;
      if (claimed.has(a.agentId)) continue;
      if (chosen.has(a)) found++;
      else if (a.outbox.size === 0) {
        chosen.add(a);
        found++;
      } else busy.push(a);
    }
    // Not enough idle agents: the least loaded of the busy ones seen.
    if (found < wanted) for (const a of busy.sort((x, y) => load(x) - load(y)).slice(0, wanted - found)) chosen.add(a);
  }
  return { candidates: [...chosen], usable };
}

// The most kinds of task (fit keys) hasIdleMisfit looks through.
const MISFIT_KINDS = 64;

/**
 * Whether an agent free now, and not claimed, can run none of `tasks`. A pass that read
 * only the head of a backlog then has an agent its read gave nothing to, while work for it
 * may lie further back; one task per fit key is checked, so the cost follows the kinds of
 * task read, not their number.
 */
export function hasIdleMisfit(ring: { agents: readonly AgentRuntime[] }, tasks: TaskRuntime[], claimed: ReadonlySet<string>): boolean {
  const kinds = new Map<string, TaskRuntime>();
  for (const rt of tasks) {
    const key = fitKey(rt);
    if (!kinds.has(key)) kinds.set(key, rt);
  }
  // Past a few dozen kinds (tasks addressed to one agent each, say) the check would cost agents x kinds: it
  // answers yes, and the pass reads the whole backlog, as every pass did before reads were bounded.
  if (kinds.size > MISFIT_KINDS) return true;
  const each = [...kinds.values()];
  for (const a of ring.agents) {
    if (claimed.has(a.agentId) || !isCandidate(a)) continue;
    if (!each.some((rt) => runs(a, rt))) return true;
  }
  return false;
}
