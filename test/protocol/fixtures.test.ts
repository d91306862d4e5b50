import { readFileSync } from "node:fs";
import { create, fromJson, toBinary, fromBinary, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { Action, Priority, ProgressStatus } from "../../gen/baton/v1/common_pb.js";
import {
  AgentStatusRequestSchema,
  CoordinationDirectiveSchema,
  DirectiveAckSchema,
  ProgressUpdateSchema,
  AckOutcome,
} from "../../gen/baton/v1/coordination_pb.js";
import { ConnectRequestSchema } from "../../gen/baton/v1/session_pb.js";
import { assertProtocolValid } from "../../src/protocol/index.js";
import { findViolation } from "../../src/rpc/index.js";
import { BatonError, Code } from "../../src/errors.js";

const fixture = (name: string) => JSON.parse(readFileSync(new URL(`../fixtures/${name}.json`, import.meta.url), "utf8")) as Record<string, JsonValue>;

function violationOf(schema: DescMessage, json: Record<string, JsonValue>): string | undefined {
  return findViolation(schema, fromJson(schema, json));
}

describe("the spec's JSON examples", () => {
  it("agent_status_request parses, validates and survives the wire", () => {
    const msg = fromJson(AgentStatusRequestSchema, fixture("agent_status_request"));
    expect(msg.requestId).toBe("550e8400-e29b-41d4-a716-446655440000");
    expect(msg.targetAgent).toBe("task_executor_1");
    expect(msg.timestamp?.seconds).toBe(BigInt(Date.parse("2024-03-21T10:00:00Z") / 1000));
    assertProtocolValid(AgentStatusRequestSchema, msg);
    const back = fromBinary(AgentStatusRequestSchema, toBinary(AgentStatusRequestSchema, msg));
    expect(back).toEqual(msg);
  });

  it("coordination_directive parses with typed assign_task parameters", () => {
    const msg = fromJson(CoordinationDirectiveSchema, fixture("coordination_directive"));
    expect(msg.action).toBe(Action.ASSIGN_TASK);
    expect(msg.parameters?.kind.case).toBe("assignTask");
    if (msg.parameters?.kind.case !== "assignTask") throw new Error("unreachable");
    expect(msg.parameters.kind.value.taskId).toBe("task_123");
    expect(msg.parameters.kind.value.priority).toBe(Priority.HIGH);
    expect(msg.parameters.kind.value.resources).toEqual(["cpu_core_1", "memory_block_2"]);
    assertProtocolValid(CoordinationDirectiveSchema, msg);
  });

  it("progress_update parses with its metrics", () => {
    const msg = fromJson(ProgressUpdateSchema, fixture("progress_update"));
    expect(msg.status).toBe(ProgressStatus.IN_PROGRESS);
    expect(msg.metrics?.completionPercentage).toBe(75);
    expect(msg.metrics?.resourceUtilization).toBe(0.8);
    assertProtocolValid(ProgressUpdateSchema, msg);
  });
});

describe("required fields", () => {
  const cases: Array<[string, DescMessage, string, string]> = [
    ["agent_status_request", AgentStatusRequestSchema, "request_id", "request_id is required"],
    ["agent_status_request", AgentStatusRequestSchema, "timestamp", "timestamp is required"],
    ["agent_status_request", AgentStatusRequestSchema, "target_agent", "target_agent is required"],
    ["coordination_directive", CoordinationDirectiveSchema, "directive_id", "directive_id is required"],
    ["coordination_directive", CoordinationDirectiveSchema, "timestamp", "timestamp is required"],
    ["coordination_directive", CoordinationDirectiveSchema, "target_agent", "target_agent is required"],
    ["coordination_directive", CoordinationDirectiveSchema, "action", "action is required"],
    ["coordination_directive", CoordinationDirectiveSchema, "parameters", "parameters is required"],
    ["progress_update", ProgressUpdateSchema, "event_id", "event_id is required"],
    ["progress_update", ProgressUpdateSchema, "timestamp", "timestamp is required"],
    ["progress_update", ProgressUpdateSchema, "source_agent", "source_agent is required"],
    ["progress_update", ProgressUpdateSchema, "status", "status is required"],
    ["progress_update", ProgressUpdateSchema, "metrics", "metrics is required"],
  ];
  it.each(cases)("%s without %s is refused, naming the field", (name, schema, field, expected) => {
    const json = { ...fixture(name) };
    delete json[field];
    expect(violationOf(schema, json)).toBe(expected);
  });

  it("assertProtocolValid throws INVALID_ARGUMENT with the message and field", () => {
    const json = { ...fixture("agent_status_request") };
    delete json.target_agent;
    const msg = fromJson(AgentStatusRequestSchema, json);
    let caught: unknown;
    try {
      assertProtocolValid(AgentStatusRequestSchema, msg);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(BatonError);
    expect((caught as BatonError).code).toBe(Code.INVALID_ARGUMENT);
    expect((caught as BatonError).message).toContain("target_agent");
  });

  it("a uuid field that is not a UUID is refused", () => {
    expect(violationOf(AgentStatusRequestSchema, { ...fixture("agent_status_request"), request_id: "not-a-uuid" })).toMatch(/request_id must be a UUID/);
  });

  it("parameters that do not match the action are refused", () => {
    const json = { ...fixture("coordination_directive"), action: "ACTION_FORM_COALITION" };
    let caught: unknown;
    try {
      assertProtocolValid(CoordinationDirectiveSchema, fromJson(CoordinationDirectiveSchema, json));
    } catch (err) {
      caught = err;
    }
    expect((caught as BatonError).code).toBe(Code.INVALID_ARGUMENT);
    expect((caught as BatonError).message).toMatch(/assign_task does not match action form_coalition/);
  });

  it("nested required fields are named with their path", () => {
    const frame = create(ConnectRequestSchema, { kind: { case: "hello", value: { agentId: "" } } });
    expect(findViolation(ConnectRequestSchema, frame)).toBe("hello.agent_id is required");
    const reports = create(ConnectRequestSchema, {
      kind: { case: "reports", value: { reports: [{ kind: { case: "directiveAck", value: { directiveId: "550e8400-e29b-41d4-a716-446655440001", timestamp: timestampNow(), sourceAgent: "a", outcome: AckOutcome.ACCEPTED } } }, { kind: { case: "directiveAck", value: { directiveId: "550e8400-e29b-41d4-a716-446655440001", timestamp: timestampNow(), outcome: AckOutcome.ACCEPTED } } }] } },
    });
    expect(findViolation(ConnectRequestSchema, reports)).toBe("reports.reports[1].directive_ack.source_agent is required");
  });

  it("a rejection without a reason is refused", () => {
    const ack = create(DirectiveAckSchema, { directiveId: "550e8400-e29b-41d4-a716-446655440001", timestamp: timestampNow(), sourceAgent: "a", outcome: AckOutcome.REJECTED });
    expect(() => assertProtocolValid(DirectiveAckSchema, ack)).toThrow(/reason is required/);
  });

  it("a timestamp out of range is refused", () => {
    const msg = fromJson(AgentStatusRequestSchema, fixture("agent_status_request"));
    msg.timestamp!.nanos = 2_000_000_000;
    expect(findViolation(AgentStatusRequestSchema, msg)).toBe("timestamp.nanos must be 0 to 999999999");
  });
});
