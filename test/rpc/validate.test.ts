import { create, createFileRegistry, setExtension, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import {
  DescriptorProtoSchema,
  DurationSchema,
  FieldDescriptorProtoSchema,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FieldOptionsSchema,
  file_google_protobuf_struct,
  file_google_protobuf_wrappers,
  FileDescriptorProtoSchema,
  TimestampSchema,
  type FieldOptions,
} from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { file_baton_v1_control, SubmitTaskRequestSchema, SubmitTasksRequestSchema, TaskSchema, WatchEventsRequestSchema } from "../../gen/baton/v1/control_pb.js";
import {
  AckOutcome,
  AgentStatusRequestSchema,
  CompletionStatus,
  DirectiveAckSchema,
  DirectiveCancelSchema,
  DirectiveParametersSchema,
  ProgressMetricsSchema,
  TaskCompletionSchema,
  TaskErrorSchema,
  type TaskCompletion,
} from "../../gen/baton/v1/coordination_pb.js";
import { AgentReportsSchema, ConnectRequestSchema, ConnectResponseSchema, HelloSchema } from "../../gen/baton/v1/session_pb.js";
import { field_behavior, FieldBehavior } from "../../gen/google/api/field_behavior_pb.js";
import { field_info, FieldInfo_Format, FieldInfoSchema } from "../../gen/google/api/field_info_pb.js";
import { BatonError, Code } from "../../src/errors.js";
import { assertValid, findViolation, MAX_ID_CHARS, MAX_TEXT_CHARS } from "../../src/rpc/validate.js";

const UUID_V4 = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b";
const UUID_V7 = "0190b6a2-7c3e-7a1b-9f00-5d4c3b2a1908";
const NOW = { seconds: 1_700_000_000n, nanos: 5 };

/** `findViolation` of a message made by create() from `init`. */
function violation<Desc extends DescMessage>(desc: Desc, init: Record<string, unknown>): string | undefined {
  return findViolation(desc, create(desc, init as never) as MessageShape<Desc>);
}

const long = (n: number, c = "x") => c.repeat(n);

/** A TaskCompletion that passes, with `more` over it. */
function completion(more: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    eventId: UUID_V4,
    timestamp: NOW,
    sourceAgent: "a1",
    directiveId: UUID_V7,
    taskId: "t1",
    status: CompletionStatus.SUCCEEDED,
    result: { ok: true, text: long(MAX_TEXT_CHARS * 2) },
    metrics: { completionPercentage: 100, custom: { ms: 12 } },
    duration: { seconds: 3n, nanos: 400 },
    ...more,
  };
}

/** A ConnectRequest carrying these reports. */
function reports(...items: Array<Record<string, unknown>>): Record<string, unknown> {
  return { kind: { case: "reports", value: { messageId: UUID_V4, sentAt: NOW, sender: "a1", reports: items } } };
}

describe("findViolation: REQUIRED fields", () => {
  it("an absent required string, message, list or enum is named with its path", () => {
    expect(violation(HelloSchema, {})).toBe("agent_id is required");
    expect(violation(HelloSchema, { agentId: "" })).toBe("agent_id is required");
    expect(violation(ConnectRequestSchema, { kind: { case: "hello", value: {} } })).toBe("hello.agent_id is required");
    expect(violation(SubmitTaskRequestSchema, {})).toBe("task is required");
    expect(violation(SubmitTaskRequestSchema, { task: {} })).toBe("task.task_id is required");
    expect(violation(SubmitTasksRequestSchema, { tasks: [] })).toBe("tasks is required");
    expect(violation(SubmitTasksRequestSchema, { tasks: [{ taskId: "a" }, {}] })).toBe("tasks[1].task_id is required");
    expect(violation(AgentStatusRequestSchema, { requestId: UUID_V4, targetAgent: "a1" })).toBe("timestamp is required");
    const ack = { directiveId: UUID_V4, timestamp: NOW, sourceAgent: "a1" };
    expect(violation(DirectiveAckSchema, ack)).toBe("outcome is required");
    expect(violation(DirectiveAckSchema, { ...ack, outcome: AckOutcome.ACCEPTED })).toBeUndefined();
  });

  it("an explicit-presence (proto3 optional) required field is present once set, even to the empty string", () => {
    const { Probe } = probeTypes();
    expect(violation(Probe, {})).toBe("name is required");
    expect(violation(Probe, { name: "" })).toBeUndefined();
  });
});

describe("findViolation: UUID4-format fields", () => {
  it("a value that is not a UUID is refused, quoted; any version, either case, is accepted; empty is absent", () => {
    expect(violation(AgentReportsSchema, { messageId: "nope" })).toBe('message_id must be a UUID, got "nope"');
    expect(violation(ConnectRequestSchema, { kind: { case: "reports", value: { messageId: "nope" } } })).toBe('reports.message_id must be a UUID, got "nope"');
    expect(violation(AgentReportsSchema, { messageId: `${UUID_V4}0` })).toBe(`message_id must be a UUID, got "${UUID_V4}0"`);
    expect(violation(AgentReportsSchema, { messageId: long(100, "z") })).toBe(`message_id must be a UUID, got "${long(64, "z")}"…`);
    expect(violation(AgentReportsSchema, { messageId: UUID_V4 })).toBeUndefined();
    expect(violation(AgentReportsSchema, { messageId: UUID_V7 })).toBeUndefined();
    expect(violation(AgentReportsSchema, { messageId: UUID_V7.toUpperCase() })).toBeUndefined();
    expect(violation(AgentReportsSchema, { messageId: "" })).toBeUndefined();
  });

  it("an explicit-presence UUID field set to the empty string is checked; unset it is not", () => {
    const { Probe } = probeTypes();
    expect(violation(Probe, { name: "n", id: "" })).toBe('id must be a UUID, got ""');
    expect(violation(Probe, { name: "n", id: UUID_V4 })).toBeUndefined();
    expect(violation(Probe, { name: "n" })).toBeUndefined();
  });

  it("an over-long UUID field is refused for its length first", () => {
    expect(violation(AgentReportsSchema, { messageId: long(MAX_ID_CHARS + 1) })).toBe("message_id is 257 characters, over the limit of 256");
  });
});

describe("findViolation: string lengths", () => {
  it("an id is at most MAX_ID_CHARS", () => {
    expect(MAX_ID_CHARS).toBe(256);
    expect(violation(HelloSchema, { agentId: long(MAX_ID_CHARS) })).toBeUndefined();
    expect(violation(HelloSchema, { agentId: long(MAX_ID_CHARS + 1) })).toBe("agent_id is 257 characters, over the limit of 256");
  });

  it("free text (reason, message, description, topics) is at most MAX_TEXT_CHARS", () => {
    expect(MAX_TEXT_CHARS).toBe(16_384);
    const cancel = { directiveId: UUID_V4 };
    expect(violation(DirectiveCancelSchema, { ...cancel, reason: long(MAX_TEXT_CHARS) })).toBeUndefined();
    expect(violation(DirectiveCancelSchema, { ...cancel, reason: long(MAX_TEXT_CHARS + 1) })).toBe("reason is 16385 characters, over the limit of 16384");
    expect(violation(TaskErrorSchema, { code: "c", message: long(MAX_TEXT_CHARS) })).toBeUndefined();
    expect(violation(TaskErrorSchema, { message: long(MAX_TEXT_CHARS + 1) })).toBe("message is 16385 characters, over the limit of 16384");
    expect(violation(TaskErrorSchema, { code: long(MAX_ID_CHARS + 1) })).toBe("code is 257 characters, over the limit of 256");
    expect(violation(WatchEventsRequestSchema, { topics: ["task.*", long(MAX_TEXT_CHARS)] })).toBeUndefined();
    expect(violation(WatchEventsRequestSchema, { topics: ["task.*", long(MAX_TEXT_CHARS + 1)] })).toBe("topics[1] is 16385 characters, over the limit of 16384");
    const { Probe } = probeTypes();
    expect(violation(Probe, { name: "n", description: long(MAX_TEXT_CHARS) })).toBeUndefined();
    expect(violation(Probe, { name: "n", description: long(MAX_TEXT_CHARS + 1) })).toBe("description is 16385 characters, over the limit of 16384");
  });

  it("each element of a repeated string is checked, named by index", () => {
    expect(violation(HelloSchema, { agentId: "a1", capabilities: ["python", long(MAX_ID_CHARS)] })).toBeUndefined();
    expect(violation(HelloSchema, { agentId: "a1", capabilities: ["python", long(MAX_ID_CHARS + 1)] })).toBe("capabilities[1] is 257 characters, over the limit of 256");
  });

  it("each map key and value is checked, a value named by its key", () => {
    expect(violation(HelloSchema, { agentId: "a1", labels: { zone: "z", [long(MAX_ID_CHARS + 1, "k")]: "v" } })).toBe("labels has a key of 257 characters, over the limit of 256");
    expect(violation(HelloSchema, { agentId: "a1", labels: { zone: long(MAX_ID_CHARS + 1) } })).toBe("labels[zone] is 257 characters, over the limit of 256");
    expect(violation(HelloSchema, { agentId: "a1", labels: { [long(MAX_ID_CHARS, "k")]: long(MAX_ID_CHARS) } })).toBeUndefined();
    // A map of numbers still has string keys to check.
    expect(violation(ProgressMetricsSchema, { custom: { [long(MAX_ID_CHARS + 1, "k")]: 1 } })).toBe("custom has a key of 257 characters, over the limit of 256");
    // An integer key is named as its number.
    const { Probe } = probeTypes();
    expect(violation(Probe, { name: "n", counts: { 7: "ok", 12: long(MAX_ID_CHARS + 1) } })).toBe("counts[12] is 257 characters, over the limit of 256");
  });
});

describe("findViolation: nested messages", () => {
  it("a violation deep inside is named by its dotted path", () => {
    const error = { code: "boom", message: long(MAX_TEXT_CHARS + 1) };
    expect(violation(ConnectRequestSchema, reports({ kind: { case: "taskCompletion", value: completion() } }))).toBeUndefined();
    expect(violation(ConnectRequestSchema, reports({ kind: { case: "taskCompletion", value: completion({ error }) } }))).toBe(
      "reports.reports[0].task_completion.error.message is 16385 characters, over the limit of 16384",
    );
    expect(violation(SubmitTaskRequestSchema, { task: { taskId: "t", target: { labels: { gpu: long(MAX_ID_CHARS + 1) } } } })).toBe(
      "task.target.labels[gpu] is 257 characters, over the limit of 256",
    );
  });

  it("inside a repeated message, named by index", () => {
    const ok = { kind: { case: "taskCompletion", value: completion() } };
    const bad = { kind: { case: "directiveAck", value: { directiveId: UUID_V4, timestamp: NOW, outcome: AckOutcome.ACCEPTED } } };
    expect(violation(ConnectRequestSchema, reports(ok, bad))).toBe("reports.reports[1].directive_ack.source_agent is required");
    const hello = (resources: unknown) => ({ kind: { case: "hello", value: { agentId: "a1", resources } } });
    expect(violation(ConnectRequestSchema, hello([{ resourceId: "cpu" }, { resourceId: long(MAX_ID_CHARS + 1) }]))).toBe(
      "hello.resources[1].resource_id is 257 characters, over the limit of 256",
    );
    expect(violation(ConnectRequestSchema, hello([{ resourceId: "cpu", attributes: { k: long(MAX_ID_CHARS + 1) } }]))).toBe(
      "hello.resources[0].attributes[k] is 257 characters, over the limit of 256",
    );
  });

  it("inside a map of messages, named by key", () => {
    const { Probe } = probeTypes();
    expect(violation(Probe, { name: "n", specs: { a: { taskId: "a" }, b: {} } })).toBe("specs[b].task_id is required");
    expect(violation(Probe, { name: "n", specs: { a: { taskId: "a", labels: { [long(MAX_ID_CHARS + 1, "k")]: "v" } } } })).toBe(
      "specs[a].labels has a key of 257 characters, over the limit of 256",
    );
    expect(violation(Probe, { name: "n", specs: { a: { taskId: "a" }, b: { taskId: "b" } } })).toBeUndefined();
  });

  it("a recursive type is walked to any depth", () => {
    const { Node } = probeTypes();
    const deep = { name: "root", children: [{ children: [{ name: "leaf" }, { name: long(MAX_ID_CHARS + 1) }] }] };
    expect(violation(Node, deep)).toBe("children[0].children[1].name is 257 characters, over the limit of 256");
    expect(violation(Node, { children: [{ children: [{ name: "leaf" }] }] })).toBeUndefined();
  });

  it("a cycle of two types: a check reached only through the other type is found, whichever is asked first", () => {
    const outerFirst = probeTypes();
    expect(violation(outerFirst.Outer, { inner: { outer: { spec: {} } } })).toBe("inner.outer.spec.task_id is required");
    expect(violation(outerFirst.Inner, { outer: { inner: { outer: { spec: {} } } } })).toBe("outer.inner.outer.spec.task_id is required");
    const innerFirst = probeTypes();
    expect(violation(innerFirst.Inner, { outer: { inner: { outer: { spec: {} } } } })).toBe("outer.inner.outer.spec.task_id is required");
    expect(violation(innerFirst.Outer, { inner: { outer: { spec: {} } } })).toBe("inner.outer.spec.task_id is required");
    expect(violation(innerFirst.Outer, { inner: { outer: { spec: { taskId: "t" } } } })).toBeUndefined();
  });

  it("a wrapper field (unboxed in the message) is checked as the wrapper message", () => {
    const { Probe } = probeTypes();
    expect(violation(Probe, { name: "n", alias: long(MAX_ID_CHARS) })).toBeUndefined();
    expect(violation(Probe, { name: "n", alias: long(MAX_ID_CHARS + 1) })).toBe("alias.value is 257 characters, over the limit of 256");
  });
});

describe("findViolation: oneofs", () => {
  it("the set member is checked; members not set are not", () => {
    expect(violation(ConnectRequestSchema, {})).toBeUndefined();
    // Hello requires agent_id, but no hello is set.
    expect(violation(ConnectRequestSchema, { kind: { case: "heartbeat", value: {} } })).toBeUndefined();
    expect(violation(ConnectRequestSchema, { kind: { case: "hello", value: { agentId: long(MAX_ID_CHARS + 1) } } })).toBe(
      "hello.agent_id is 257 characters, over the limit of 256",
    );
    expect(violation(DirectiveParametersSchema, { kind: { case: "assignTask", value: {} } })).toBe("assign_task.task_id is required");
    expect(violation(DirectiveParametersSchema, { kind: { case: "adjustResources", value: { reason: "r" } } })).toBeUndefined();
    expect(violation(DirectiveParametersSchema, { kind: { case: "formCoalition", value: { coalitionId: "c", taskId: "t", leader: "a1" } } })).toBe(
      "form_coalition.members is required",
    );
  });
});

describe("findViolation: Timestamp and Duration", () => {
  const hello = (sentAt: Record<string, unknown>) => ({ kind: { case: "hello", value: { agentId: "a1", sentAt } } });

  it("a Timestamp outside years 1 to 9999, or with nanos outside 0..999999999, is refused", () => {
    expect(violation(ConnectRequestSchema, hello({ seconds: 253402300799n, nanos: 999_999_999 }))).toBeUndefined();
    expect(violation(ConnectRequestSchema, hello({ seconds: -62135596800n }))).toBeUndefined();
    expect(violation(ConnectRequestSchema, hello({ seconds: 253402300800n }))).toBe("hello.sent_at is out of range (years 1 to 9999)");
    expect(violation(ConnectRequestSchema, hello({ seconds: -62135596801n }))).toBe("hello.sent_at is out of range (years 1 to 9999)");
    expect(violation(ConnectRequestSchema, hello({ seconds: 1n, nanos: -1 }))).toBe("hello.sent_at.nanos must be 0 to 999999999");
    expect(violation(ConnectRequestSchema, hello({ seconds: 1n, nanos: 1_000_000_000 }))).toBe("hello.sent_at.nanos must be 0 to 999999999");
    // The zero Timestamp, set, is in range.
    expect(violation(ConnectRequestSchema, hello({}))).toBeUndefined();
    expect(violation(TaskSchema, { attempts: [{ startedAt: NOW }, { startedAt: NOW, endedAt: { seconds: 253402300800n } }] })).toBe(
      "attempts[1].ended_at is out of range (years 1 to 9999)",
    );
    // Asked about a Timestamp itself, there is no field to name.
    expect(violation(TimestampSchema, { seconds: 253402300800n })).toBe(" is out of range (years 1 to 9999)");
    expect(violation(TimestampSchema, { nanos: -1 })).toBe(".nanos must be 0 to 999999999");
  });

  it("a Duration beyond ±10000 years, with nanos beyond ±999999999, or with mixed signs, is refused", () => {
    const tc = (duration: Record<string, unknown>) => violation(TaskCompletionSchema, completion({ duration }));
    expect(tc({ seconds: 315576000000n, nanos: 999_999_999 })).toBeUndefined();
    expect(tc({ seconds: -315576000000n, nanos: -999_999_999 })).toBeUndefined();
    expect(tc({ seconds: 0n, nanos: -5 })).toBeUndefined();
    expect(tc({ seconds: 315576000001n })).toBe("duration is out of range");
    expect(tc({ seconds: -315576000001n })).toBe("duration is out of range");
    expect(tc({ nanos: 1_000_000_000 })).toBe("duration.nanos must be within ±999999999");
    expect(tc({ nanos: -1_000_000_000 })).toBe("duration.nanos must be within ±999999999");
    expect(tc({ seconds: 1n, nanos: -1 })).toBe("duration has seconds and nanos of different signs");
    expect(tc({ seconds: -1n, nanos: 1 })).toBe("duration has seconds and nanos of different signs");
    expect(violation(ConnectResponseSchema, { kind: { case: "welcome", value: { sessionId: "s", heartbeatInterval: { seconds: 1n, nanos: -1 } } } })).toBe(
      "welcome.heartbeat_interval has seconds and nanos of different signs",
    );
    expect(violation(DurationSchema, { seconds: 315576000001n })).toBe(" is out of range");
  });
});

describe("findViolation: payloads", () => {
  it("Struct, Value and ListValue contents are not walked", () => {
    const big = { blob: long(MAX_TEXT_CHARS * 2), [long(MAX_ID_CHARS * 2, "k")]: { list: [long(MAX_TEXT_CHARS * 2)] } };
    expect(violation(SubmitTaskRequestSchema, { task: { taskId: "t", input: big, sensitiveInput: big } })).toBeUndefined();
    expect(violation(DirectiveParametersSchema, { extensions: big })).toBeUndefined();
    const { Probe } = probeTypes();
    const value = { kind: { case: "stringValue", value: long(MAX_TEXT_CHARS * 2) } };
    expect(violation(Probe, { name: "n", values: { k: value }, lists: [{ values: [value] }] })).toBeUndefined();
    // The map holding Values still has string keys of its own.
    expect(violation(Probe, { name: "n", values: { [long(MAX_ID_CHARS + 1, "k")]: value } })).toBe("values has a key of 257 characters, over the limit of 256");
  });
});

describe("findViolation: which violation", () => {
  it("the first in schema order is reported when there are several", () => {
    expect(violation(HelloSchema, { capabilities: [long(MAX_ID_CHARS + 1)] })).toBe("agent_id is required");
    expect(violation(HelloSchema, { agentId: "a", capabilities: [long(MAX_ID_CHARS + 1)], labels: { z: long(MAX_ID_CHARS + 1) } })).toBe(
      "capabilities[0] is 257 characters, over the limit of 256",
    );
    expect(violation(HelloSchema, { agentId: "a", capabilities: ["p", long(MAX_ID_CHARS + 1), long(MAX_ID_CHARS + 2)] })).toBe(
      "capabilities[1] is 257 characters, over the limit of 256",
    );
    expect(violation(HelloSchema, { agentId: "a", labels: { b: long(MAX_ID_CHARS + 1), a: long(MAX_ID_CHARS + 2) } })).toBe(
      "labels[b] is 257 characters, over the limit of 256",
    );
    const bad: Partial<TaskCompletion> = { eventId: "bad", sourceAgent: "", status: CompletionStatus.UNSPECIFIED };
    expect(violation(TaskCompletionSchema, completion(bad))).toBe('event_id must be a UUID, got "bad"');
    expect(violation(TaskCompletionSchema, completion({ ...bad, eventId: UUID_V4 }))).toBe("source_agent is required");
    expect(violation(TaskCompletionSchema, completion({ sourceAgent: "", timestamp: undefined }))).toBe("timestamp is required");
  });
});

describe("assertValid", () => {
  it("throws INVALID_ARGUMENT naming the type and the violation; passes a valid message", () => {
    const frame = create(ConnectRequestSchema, { kind: { case: "hello", value: {} } });
    let thrown: unknown;
    try {
      assertValid(ConnectRequestSchema, frame);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(BatonError);
    expect((thrown as BatonError).code).toBe(Code.INVALID_ARGUMENT);
    expect((thrown as BatonError).message).toBe("ConnectRequest: hello.agent_id is required");
    expect(() => assertValid(SubmitTaskRequestSchema, create(SubmitTaskRequestSchema, { task: { taskId: "t" } }))).not.toThrow();
    expect(() => assertValid(TaskCompletionSchema, create(TaskCompletionSchema, completion({ taskId: long(MAX_ID_CHARS + 1) })))).toThrow(
      "TaskCompletion: task_id is 257 characters, over the limit of 256",
    );
  });
});

type FieldInit = MessageInitShape<typeof FieldDescriptorProtoSchema>;

function field(name: string, number: number, type: Type, more: FieldInit = {}): FieldInit {
  return { name, number, type, label: Label.OPTIONAL, jsonName: name, ...more };
}

function options(required: boolean, uuid: boolean): FieldOptions {
  const opts = create(FieldOptionsSchema);
  if (required) setExtension(opts, field_behavior, [FieldBehavior.REQUIRED]);
  if (uuid) setExtension(opts, field_info, create(FieldInfoSchema, { format: FieldInfo_Format.UUID4 }));
  return opts;
}

function mapEntry(name: string, key: Type, value: Type, typeName?: string): MessageInitShape<typeof DescriptorProtoSchema> {
  return { name, options: { mapEntry: true }, field: [field("key", 1, key), field("value", 2, value, typeName ? { typeName } : {})] };
}

/**
 * Types no baton file has (a map of messages, an int-keyed map, proto3 optional fields,
 * a wrapper, Values, recursion, a cycle), from a file built here on top of control.proto.
 * Each call builds new descriptors, so nothing is cached for them yet.
 */
function probeTypes(): Record<"Probe" | "Node" | "Outer" | "Inner", DescMessage> {
  const file = create(FileDescriptorProtoSchema, {
    name: "test/validate_probe.proto",
    package: "test.validate",
    syntax: "proto3",
    dependency: ["baton/v1/control.proto", "google/protobuf/struct.proto", "google/protobuf/wrappers.proto"],
    messageType: [
      {
        name: "Probe",
        oneofDecl: [{ name: "_id" }, { name: "_name" }],
        field: [
          field("specs", 1, Type.MESSAGE, { typeName: ".test.validate.Probe.SpecsEntry", label: Label.REPEATED }),
          field("counts", 2, Type.MESSAGE, { typeName: ".test.validate.Probe.CountsEntry", label: Label.REPEATED }),
          field("description", 3, Type.STRING),
          field("id", 4, Type.STRING, { oneofIndex: 0, proto3Optional: true, options: options(false, true) }),
          field("name", 5, Type.STRING, { oneofIndex: 1, proto3Optional: true, options: options(true, false) }),
          field("alias", 6, Type.MESSAGE, { typeName: ".google.protobuf.StringValue" }),
          field("values", 7, Type.MESSAGE, { typeName: ".test.validate.Probe.ValuesEntry", label: Label.REPEATED }),
          field("lists", 8, Type.MESSAGE, { typeName: ".google.protobuf.ListValue", label: Label.REPEATED }),
        ],
        nestedType: [
          mapEntry("SpecsEntry", Type.STRING, Type.MESSAGE, ".baton.v1.TaskSpec"),
          mapEntry("CountsEntry", Type.INT32, Type.STRING),
          mapEntry("ValuesEntry", Type.STRING, Type.MESSAGE, ".google.protobuf.Value"),
        ],
      },
      { name: "Outer", field: [field("inner", 1, Type.MESSAGE, { typeName: ".test.validate.Inner" }), field("spec", 2, Type.MESSAGE, { typeName: ".baton.v1.TaskSpec" })] },
      { name: "Inner", field: [field("outer", 1, Type.MESSAGE, { typeName: ".test.validate.Outer" })] },
      { name: "Node", field: [field("children", 1, Type.MESSAGE, { typeName: ".test.validate.Node", label: Label.REPEATED }), field("name", 2, Type.STRING)] },
    ],
  });
  const deps: Record<string, typeof file_baton_v1_control> = {
    "baton/v1/control.proto": file_baton_v1_control,
    "google/protobuf/struct.proto": file_google_protobuf_struct,
    "google/protobuf/wrappers.proto": file_google_protobuf_wrappers,
  };
  const registry = createFileRegistry(file, (name) => deps[name]);
  const get = (name: string) => registry.getMessage(`test.validate.${name}`)!;
  return { Probe: get("Probe"), Node: get("Node"), Outer: get("Outer"), Inner: get("Inner") };
}
