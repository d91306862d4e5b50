export { BatonAgent, createAgent, type AgentEvents, type AgentOptions, type DirectiveContext, type DirectiveHandler, type ReceivedDirective, type SessionEnd } from "./agent.js";
