export { PROTOCOL_VERSION, assertProtocolValid, directiveViolation, ackViolation, isValidAgentId } from "./rules.js";
export {
  DEFAULT_PAYLOAD_LIMITS,
  ENVELOPE_RESERVE_BYTES,
  assertHelloFits,
  assertTaskSpecFits,
  countWithin,
  elementBytes,
  helloSizeViolation,
  messageBudget,
  taskSpecSizeViolation,
  type PayloadLimits,
} from "./limits.js";
