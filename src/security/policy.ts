import { readFileSync } from "node:fs";
import { isRole, ROLES, type RoleName } from "./spiffe.js";

/**
 * The capability each RPC needs, by full method path. A served method missing here is
 * refused for everyone (fail closed), and a test checks that every served method is listed.
 */
export const METHOD_CAPABILITIES: Readonly<Record<string, string>> = Object.freeze({
  "/baton.v1.Coordinator/Connect": "agent.connect",
  "/baton.v1.Control/SubmitTask": "tasks.submit",
  "/baton.v1.Control/SubmitTasks": "tasks.submit",
  "/baton.v1.Control/ResubmitTask": "tasks.submit",
  "/baton.v1.Control/GetTask": "tasks.read",
  "/baton.v1.Control/ListTasks": "tasks.read",
  // It names agents and their labels beside the task: its own capability, under operators' tasks.*.
  "/baton.v1.Control/ExplainTask": "tasks.explain",
  "/baton.v1.Control/CancelTask": "tasks.cancel",
  "/baton.v1.Control/ListAgents": "agents.read",
  "/baton.v1.Control/GetAgent": "agents.read",
  "/baton.v1.Control/GetAgentStatus": "agents.status",
  "/baton.v1.Control/DrainAgent": "agents.drain",
  "/baton.v1.Control/UndrainAgent": "agents.drain",
  "/baton.v1.Control/GetCoordination": "coordination.read",
  "/baton.v1.Control/WatchEvents": "events.watch",
  "/baton.v1.ResourceManager/Query": "resources.query",
  "/baton.v1.ResourceManager/Reserve": "resources.reserve",
  "/baton.v1.ResourceManager/Release": "resources.reserve",
  "/baton.v1.ResourceManager/RegisterResources": "resources.register",
  "/baton.v1.PerformanceMonitor/GetMetrics": "metrics.read",
  "/baton.v1.PerformanceMonitor/WatchMetrics": "metrics.read",
  "/baton.v1.PerformanceMonitor/ReportMetrics": "metrics.report",
  "/baton.v1.PerformanceMonitor/ReportPerformance": "metrics.report",
  "/grpc.health.v1.Health/Check": "health.check",
  "/grpc.health.v1.Health/Watch": "health.check",
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": "reflection",
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "reflection",
});

/**
 * The Control methods that only read (GetAgentStatus asks an agent, changing nothing). A
 * follower forwards these to the leader for its caller; a forwarded call of any other method
 * is refused, so a write always goes to the leader itself (the follower names it).
 */
export const CONTROL_READS: ReadonlySet<string> = new Set(
  ["GetTask", "ListTasks", "ExplainTask", "ListAgents", "GetAgent", "GetAgentStatus", "GetCoordination", "WatchEvents"].map((m) => `/baton.v1.Control/${m}`),
);

/**
 * What a caller needs for its baton-forwarded-identity header to be believed: it then acts
 * for whoever it names (with that caller's capabilities), so only the coordinator role holds
 * it by default, and a policy file that lists the coordinator's capabilities without it
 * turns forwarding off. Not a method's: checked before the method's own capability.
 */
export const FORWARD_CAPABILITY = "control.forward";

/** Every capability some method needs, and control.forward. */
export const CAPABILITIES: readonly string[] = [...new Set([...Object.values(METHOD_CAPABILITIES), FORWARD_CAPABILITY])].sort();

/** Roles to the capabilities they hold; an entry is a capability, "prefix.*" or "*". */
export type PolicyRules = Readonly<Record<RoleName, readonly string[]>>;

/**
 * Least privilege by default: agents only hold their session, the coordinator only what it
 * calls on a separate Resource Manager and Performance Monitor and forwarding a follower's
 * Control reads, operators the control plane.
 */
export const DEFAULT_POLICY: PolicyRules = Object.freeze({
  coordinator: ["resources.*", "metrics.*", "health.check", "reflection", FORWARD_CAPABILITY],
  managed_agent: ["agent.connect", "health.check"],
  resource_manager: ["metrics.report", "health.check"],
  performance_monitor: ["health.check"],
  operator: ["tasks.*", "agents.*", "coordination.read", "events.watch", "resources.*", "metrics.*", "health.check", "reflection"],
});

/** A compiled policy: who may do what. */
export interface Policy {
  /** The capability a method needs, or undefined when none is defined (refused). */
  capabilityOf(methodPath: string): string | undefined;
  /** Whether a role holds a capability. */
  allows(role: RoleName, capability: string): boolean;
  /** The rules in effect, for logs and `baton` output. */
  readonly rules: PolicyRules;
}

/** A policy file that cannot be used; the message names the file and the entry. */
export class PolicyError extends Error {
  override readonly name = "PolicyError";
}

function matches(pattern: string, capability: string): boolean {
  if (pattern === "*") return true;
  if (pattern.endsWith(".*")) return capability.startsWith(pattern.slice(0, -1));
  return pattern === capability;
}

function checkEntry(entry: unknown, where: string): string {
  if (typeof entry !== "string" || entry.length === 0) throw new PolicyError(`${where} must be a non-empty string`);
  // A typo would otherwise grant nothing, silently: every entry must name something real.
  if (!CAPABILITIES.some((c) => matches(entry, c))) {
    throw new PolicyError(`${where} ${JSON.stringify(entry)} matches no capability; known: ${CAPABILITIES.join(", ")}`);
  }
  return entry;
}

/** Compiles rules (each role's list replaces the default's) into a Policy. */
export function createPolicy(overrides: Partial<Record<string, unknown>> = {}, source = "policy"): Policy {
  const rules: Record<RoleName, readonly string[]> = { ...DEFAULT_POLICY };
  for (const [role, entries] of Object.entries(overrides)) {
    if (!isRole(role)) throw new PolicyError(`${source}: unknown role ${JSON.stringify(role)}; roles are ${ROLES.join(", ")}`);
    if (!Array.isArray(entries)) throw new PolicyError(`${source}: roles.${role} must be a list of capabilities`);
    rules[role] = Object.freeze(entries.map((e, i) => checkEntry(e, `${source}: roles.${role}[${i}]`)));
  }
  const frozen = Object.freeze(rules);
  const cache = new Map<string, boolean>();
  return {
    rules: frozen,
    capabilityOf: (methodPath) => METHOD_CAPABILITIES[methodPath],
    allows(role, capability) {
      const key = `${role}\u0000${capability}`;
      let allowed = cache.get(key);
      if (allowed === undefined) {
        allowed = frozen[role].some((p) => matches(p, capability));
        cache.set(key, allowed);
      }
      return allowed;
    },
  };
}

/** The default policy, overridden role by role by a JSON file `{ "roles": { "<role>": ["cap", ...] } }` when one is named. */
export function loadPolicy(file: string | undefined): Policy {
  if (!file) return createPolicy();
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new PolicyError(`cannot read the policy file ${file}: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new PolicyError(`the policy file ${file} must hold a JSON object`);
  const unknown = Object.keys(value).filter((k) => k !== "roles");
  if (unknown.length > 0) throw new PolicyError(`the policy file ${file} has unknown keys: ${unknown.join(", ")} (only "roles")`);
  const roles = (value as { roles?: unknown }).roles ?? {};
  if (typeof roles !== "object" || roles === null || Array.isArray(roles)) throw new PolicyError(`${file}: roles must be an object of role -> capabilities`);
  return createPolicy(roles as Record<string, unknown>, file);
}
