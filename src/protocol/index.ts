export { PROTOCOL_VERSION, assertProtocolValid, directiveViolation, ackViolation, isValidAgentId } from "./rules.js";
