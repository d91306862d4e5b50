import { clone, create, createFileRegistry, type DescMessage, type Message, type MessageInitShape } from "@bufbuild/protobuf";
import { FieldDescriptorProto_Label as Label, FieldDescriptorProto_Type as Type, FieldDescriptorProtoSchema, FileDescriptorProtoSchema, timestampNow } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { AgentSchema, EventSchema, file_baton_v1_control, GetAgentResponseSchema, ListTasksResponseSchema, SubmitTaskResponseSchema, SubmitTasksRequestSchema, TaskSchema, TaskSpecSchema, TaskState, WatchEventsResponseSchema, type Task } from "../../gen/baton/v1/control_pb.js";
import { ConnectResponseSchema } from "../../gen/baton/v1/session_pb.js";
import { containsRedacted, redact } from "../../src/rpc/index.js";

/** A task as the coordinator holds it, with every kind of field set; `secret` fills sensitive_input. */
function task(id: string, secret?: string): Task {
  return create(TaskSchema, {
    spec: {
      taskId: id,
      requiredCapabilities: ["python"],
      labels: { team: "a" },
      input: { prompt: "hello", n: 3 },
      target: { labels: { gpu: "yes" } },
      ...(secret !== undefined ? { sensitiveInput: { apiKey: secret } } : {}),
    },
    state: TaskState.RUNNING,
    submitter: "spiffe://baton.test/operator/op",
    assignedAgents: ["a1"],
    attempts: [{ attempt: 1, agents: ["a1"], directiveIds: ["d1"], startedAt: timestampNow() }],
    result: { ok: true },
    createdAt: timestampNow(),
  });
}

/** `original` with every task's sensitive_input unset: what a redacted copy must equal. */
function withoutSecrets<M extends Message>(schema: DescMessage, original: M, tasks: (m: M) => Task[]): M {
  const expected = clone(schema, original) as M;
  for (const t of tasks(expected)) if (t.spec) t.spec.sensitiveInput = undefined;
  return expected;
}

/** Redacts and checks the usual contract: a copy, the secret gone, everything else and the original as they were. */
function expectRedactedCopy<M extends Message>(schema: DescMessage, original: M, tasks: (m: M) => Task[]): M {
  const before = clone(schema, original) as M;
  const out = redact(schema, original as never) as M;
  expect(out).not.toBe(original);
  expect(out).toEqual(withoutSecrets(schema, original, tasks));
  for (const t of tasks(out)) expect(t.spec?.sensitiveInput).toBeUndefined();
  expect(original).toEqual(before);
  expect(tasks(original).some((t) => t.spec?.sensitiveInput !== undefined)).toBe(true);
  return out;
}

describe("redact: debug_redact fields never leave in an answer", () => {
  it("a SubmitTaskResponse or a Task with sensitive_input set is copied with it cleared; the original keeps it", () => {
    const response = create(SubmitTaskResponseSchema, { task: task("t1", "s3cret"), created: true });
    expectRedactedCopy(SubmitTaskResponseSchema, response, (m) => [m.task!]);
    expectRedactedCopy(TaskSchema, task("t2", "s3cret"), (m) => [m]);
  });

  it("without sensitive_input, the same object comes back (no copy)", () => {
    const response = create(SubmitTaskResponseSchema, { task: task("t1"), created: true });
    expect(redact(SubmitTaskResponseSchema, response)).toBe(response);
    const t = task("t2");
    expect(redact(TaskSchema, t)).toBe(t);
    const empty = create(ListTasksResponseSchema, {});
    expect(redact(ListTasksResponseSchema, empty)).toBe(empty);
    const noTask = create(WatchEventsResponseSchema, { event: { cursor: 1n, kind: { case: "agent", value: { agentId: "a1" } } } });
    expect(redact(WatchEventsResponseSchema, noTask)).toBe(noTask);
  });

  it("a type that holds no redacted field at any depth comes back as it is", () => {
    expect(containsRedacted(ConnectResponseSchema)).toBe(false);
    expect(containsRedacted(GetAgentResponseSchema)).toBe(false);
    expect(containsRedacted(AgentSchema)).toBe(false);
    const signed = create(ConnectResponseSchema, { kind: { case: "signedMessages", value: { keyId: "k1", payload: new Uint8Array(256).fill(7), signature: new Uint8Array(32).fill(9) } } });
    expect(redact(ConnectResponseSchema, signed)).toBe(signed);
    const agent = create(GetAgentResponseSchema, { agent: { agentId: "a1", capabilities: ["python"], labels: { zone: "z" } } });
    expect(redact(GetAgentResponseSchema, agent)).toBe(agent);
  });

  it("a list of tasks: each one set is cleared, the others are left as they were", () => {
    expect(containsRedacted(ListTasksResponseSchema)).toBe(true);
    const list = create(ListTasksResponseSchema, { tasks: [task("t1"), task("t2", "a"), task("t3"), task("t4", "b")], nextPageToken: "next" });
    const out = expectRedactedCopy(ListTasksResponseSchema, list, (m) => m.tasks);
    expect(out.tasks.map((t) => t.spec?.taskId)).toEqual(["t1", "t2", "t3", "t4"]);
    expect(out.nextPageToken).toBe("next");
    const specs = create(SubmitTasksRequestSchema, { tasks: [{ taskId: "t1" }, { taskId: "t2", sensitiveInput: { k: "v" } }] });
    const clean = redact(SubmitTasksRequestSchema, specs);
    expect(clean).not.toBe(specs);
    expect(clean.tasks.map((t) => [t.taskId, t.sensitiveInput])).toEqual([["t1", undefined], ["t2", undefined]]);
    expect(specs.tasks[1]!.sensitiveInput).toEqual({ k: "v" });
  });

  it("a task inside a oneof member (an event's kind) is cleared", () => {
    expect(containsRedacted(EventSchema)).toBe(true);
    const watched = create(WatchEventsResponseSchema, { event: { cursor: 7n, topic: "task.t1.running", kind: { case: "task", value: task("t1", "s3cret") }, reason: "r" } });
    const out = expectRedactedCopy(WatchEventsResponseSchema, watched, (m) => (m.event?.kind.case === "task" ? [m.event.kind.value] : []));
    expect(out.event?.kind.case).toBe("task");
    expect(out.event?.cursor).toBe(7n);
  });

  // No baton type has a redacted field that is itself a oneof member, a map of messages leading
  // to one, or one in a recursive type: a small file made here has them, importing TaskSpec.
  const probe = probeTypes();

  it("a map of messages holding a redacted field is cleared in every value", () => {
    const specs = { a: create(TaskSpecSchema, { taskId: "a", sensitiveInput: { k: "v" } }), b: create(TaskSpecSchema, { taskId: "b" }) };
    const message = create(probe.Probe, { specs, note: "n" } as never) as Message & Record<string, unknown>;
    const before = clone(probe.Probe, message);
    const out = redact(probe.Probe, message) as typeof message;
    expect(out).not.toBe(message);
    expect(message).toEqual(before);
    const outSpecs = out.specs as Record<string, { taskId: string; sensitiveInput?: unknown }>;
    expect(Object.keys(outSpecs).sort()).toEqual(["a", "b"]);
    expect(outSpecs.a!.sensitiveInput).toBeUndefined();
    expect(outSpecs.a!.taskId).toBe("a");
    expect(out.note).toBe("n");
    const clean = create(probe.Probe, { specs: { b: specs.b } } as never);
    expect(redact(probe.Probe, clean)).toBe(clean);
  });

  it("a redacted oneof member, a redacted list and a message in a oneof are cleared; an unset oneof is not a secret", () => {
    const secretCase = create(probe.Probe, { kind: { case: "secret", value: "x" }, note: "n" } as never) as Message & Record<string, unknown>;
    const out = redact(probe.Probe, secretCase) as typeof secretCase;
    expect(out).not.toBe(secretCase);
    expect(out.kind).toEqual({ case: undefined });
    expect(secretCase.kind).toEqual({ case: "secret", value: "x" });
    expect(out.note).toBe("n");

    const specCase = create(probe.Probe, { kind: { case: "spec", value: { taskId: "t", sensitiveInput: { k: "v" } } } } as never) as Message & Record<string, unknown>;
    const outSpec = redact(probe.Probe, specCase) as typeof specCase;
    expect((outSpec.kind as { case: string; value: { taskId: string; sensitiveInput?: unknown } }).value).toMatchObject({ taskId: "t", sensitiveInput: undefined });

    const list = create(probe.Probe, { secrets: ["a", "b"] } as never) as Message & Record<string, unknown>;
    const outList = redact(probe.Probe, list) as typeof list;
    expect(outList.secrets).toEqual([]);
    expect(list.secrets).toEqual(["a", "b"]);

    const nothing = create(probe.Probe, { note: "n", secrets: [], kind: { case: "spec", value: { taskId: "t" } } } as never);
    expect(redact(probe.Probe, nothing)).toBe(nothing);
  });

  it("a recursive type: a redacted field at any depth is found and cleared", () => {
    expect(containsRedacted(probe.Node)).toBe(true);
    const deep = create(probe.Node, { children: [{ children: [{ secrets: ["x"], name: "leaf" }], name: "mid" }], name: "root" } as never) as Message & Record<string, unknown>;
    const out = redact(probe.Node, deep) as typeof deep;
    expect(out).not.toBe(deep);
    const leaf = ((out.children as Array<Record<string, unknown>>)[0]!.children as Array<Record<string, unknown>>)[0]!;
    expect(leaf).toMatchObject({ name: "leaf", secrets: [] });
    expect(out.name).toBe("root");
    const clean = create(probe.Node, { children: [{ children: [{ name: "leaf" }] }] } as never);
    expect(redact(probe.Node, clean)).toBe(clean);
  });

  it("a cycle of two types: the redacted field is found through the other type, whichever is asked first", () => {
    // Asked about Outer first, the first version took Inner for clean while Outer was still being looked at.
    const nested = create(probe.Outer, { inner: { outer: { secrets: ["x"] } } } as never) as Message & Record<string, unknown>;
    const out = redact(probe.Outer, nested) as typeof nested;
    expect(out).not.toBe(nested);
    expect(((out.inner as Record<string, unknown>).outer as Record<string, unknown>).secrets).toEqual([]);
    expect(containsRedacted(probe.Inner)).toBe(true);
    const clean = create(probe.Outer, { inner: { outer: {} } } as never);
    expect(redact(probe.Outer, clean)).toBe(clean);
  });
});

type FieldInit = MessageInitShape<typeof FieldDescriptorProtoSchema>;

function field(name: string, number: number, type: Type, more: FieldInit = {}): FieldInit {
  return { name, number, type, label: Label.OPTIONAL, jsonName: name, ...more };
}

/** Probe and Node, from a file built here on top of baton/v1/control.proto. */
function probeTypes(): { Probe: DescMessage; Node: DescMessage; Outer: DescMessage; Inner: DescMessage } {
  const redacted = { debugRedact: true };
  const file = create(FileDescriptorProtoSchema, {
    name: "test/redact_probe.proto",
    package: "test.redact",
    syntax: "proto3",
    dependency: ["baton/v1/control.proto"],
    messageType: [
      {
        name: "Probe",
        oneofDecl: [{ name: "kind" }],
        field: [
          field("secret", 1, Type.STRING, { oneofIndex: 0, options: redacted }),
          field("spec", 2, Type.MESSAGE, { typeName: ".baton.v1.TaskSpec", oneofIndex: 0 }),
          field("specs", 3, Type.MESSAGE, { typeName: ".test.redact.Probe.SpecsEntry", label: Label.REPEATED }),
          field("secrets", 4, Type.STRING, { label: Label.REPEATED, options: redacted }),
          field("note", 5, Type.STRING),
        ],
        nestedType: [{ name: "SpecsEntry", options: { mapEntry: true }, field: [field("key", 1, Type.STRING), field("value", 2, Type.MESSAGE, { typeName: ".baton.v1.TaskSpec" })] }],
      },
      { name: "Outer", field: [field("inner", 1, Type.MESSAGE, { typeName: ".test.redact.Inner" }), field("secrets", 2, Type.STRING, { label: Label.REPEATED, options: redacted })] },
      { name: "Inner", field: [field("outer", 1, Type.MESSAGE, { typeName: ".test.redact.Outer" })] },
      {
        name: "Node",
        field: [field("children", 1, Type.MESSAGE, { typeName: ".test.redact.Node", label: Label.REPEATED }), field("name", 2, Type.STRING), field("secrets", 3, Type.STRING, { label: Label.REPEATED, options: redacted })],
      },
    ],
  });
  const registry = createFileRegistry(file, (name) => (name === "baton/v1/control.proto" ? file_baton_v1_control : undefined));
  const get = (name: string) => registry.getMessage(`test.redact.${name}`)!;
  return { Probe: get("Probe"), Node: get("Node"), Outer: get("Outer"), Inner: get("Inner") };
}
