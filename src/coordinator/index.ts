export { Coordinator, isTerminal, type AgentRuntime, type CoordinatorEvents, type CoordinatorOptions } from "./coordinator.js";
export { AgentSession } from "./agent-session.js";
export { DirectiveOutbox, backoffMs, type DeliveryPolicy, type GiveUp, type AckResult, type OutboxState } from "./directive-outbox.js";
export { createAgentBreaker, type AgentBreaker, type BreakerState } from "../breakers/index.js";
export { nextState, canTransition, TRANSITIONS, type RoundTrigger } from "./round-state.js";
export type { PerformanceSink, ResourceManagerPort } from "./ports.js";
export { toAgentMessage } from "./agent-view.js";
