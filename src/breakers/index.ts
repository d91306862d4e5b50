export { createAgentBreaker, createBreakerClock, type AgentBreaker, type BreakerOptions, type BreakerState } from "./agent-breaker.js";
export { createCallBreaker, type CallBreaker, type CallBreakerOptions } from "./call-breaker.js";
