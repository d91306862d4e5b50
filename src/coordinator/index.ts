export { Coordinator, agentStateName, type CoordinatorEvents, type CoordinatorOptions } from "./coordinator.js";
export { AgentRegistry, type AgentEntry } from "./agent-registry.js";
export { AgentSession } from "./agent-session.js";
