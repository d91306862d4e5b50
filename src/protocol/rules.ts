import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Action } from "../../gen/baton/v1/common_pb.js";
import { AckOutcome, type CoordinationDirective, type DirectiveAck } from "../../gen/baton/v1/coordination_pb.js";
import { invalidArgument } from "../errors.js";
import { findViolation } from "../rpc/index.js";

/** The protocol version this build speaks (the spec's version, package baton.v1). */
export const PROTOCOL_VERSION = "1.0.0";

const PARAMETERS_FOR: Record<number, string> = {
  [Action.ASSIGN_TASK]: "assignTask",
  [Action.FORM_COALITION]: "formCoalition",
  [Action.ADJUST_RESOURCES]: "adjustResources",
};

const SNAKE: Record<string, string> = {
  assignTask: "assign_task",
  formCoalition: "form_coalition",
  adjustResources: "adjust_resources",
};

/** Rules the schema cannot say: the directive's parameters must match its action. */
export function directiveViolation(directive: CoordinationDirective): string | undefined {
  const expected = PARAMETERS_FOR[directive.action];
  if (expected === undefined) return `action ${directive.action} is not one of assign_task, form_coalition, adjust_resources`;
  const actual = directive.parameters?.kind.case;
  if (actual === undefined) return `parameters.${SNAKE[expected]} is required for action ${SNAKE[expected]}`;
  if (actual !== expected) return `parameters.${SNAKE[actual]} does not match action ${SNAKE[expected]}`;
  return undefined;
}

/** Rules the schema cannot say for acks: a rejection or deferral says why it was refused. */
export function ackViolation(ack: DirectiveAck): string | undefined {
  if (ack.outcome === AckOutcome.REJECTED && ack.reason.trim() === "") return "reason is required when outcome is ACK_OUTCOME_REJECTED";
  if (!(ack.outcome in AckOutcome)) return `outcome ${ack.outcome} is not a known AckOutcome`;
  return undefined;
}

/** Schema annotations plus the protocol's own rules; throws INVALID_ARGUMENT naming the field. */
export function assertProtocolValid<Desc extends DescMessage>(desc: Desc, message: MessageShape<Desc>): void {
  const violation = findViolation(desc, message) ?? semanticViolation(desc.typeName, message);
  if (violation !== undefined) throw invalidArgument(`${desc.name}: ${violation}`);
}

function semanticViolation(typeName: string, message: unknown): string | undefined {
  switch (typeName) {
    case "baton.v1.CoordinationDirective":
      return directiveViolation(message as CoordinationDirective);
    case "baton.v1.DirectiveAck":
      return ackViolation(message as DirectiveAck);
    default:
      return undefined;
  }
}

// Agent ids double as the name segment of a SPIFFE id, so they share its alphabet.
const AGENT_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Whether an agent id is well-formed. */
export function isValidAgentId(id: string): boolean {
  return AGENT_ID.test(id);
}
