export { Coordinator } from "./coordinator.js";
export type { CoordinatorOptions } from "./coordinator-state.js";
export { isTerminal, type AgentView, type CoordinatorEvents } from "./runtime.js";
export type { PerformanceSink, ResourceManagerPort } from "./ports.js";
export { toAgentMessage } from "./agent-view.js";
