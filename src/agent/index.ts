export { BatonAgent, createAgent, type AgentEvents, type AgentOptions, type DirectiveContext, type DirectiveHandler, type ReceivedDirective, type Reconnecting, type SessionEnd } from "./agent.js";
/** The refusal when this agent's clock and the coordinator's are beyond the replay window apart (UNAUTHENTICATED, with skewMs). */
export { ClockSkewError } from "../security/index.js";
