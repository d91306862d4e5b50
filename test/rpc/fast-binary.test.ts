import { create, createFileRegistry, equals, fromBinary, ScalarType, toBinary, type DescField, type DescFile, type DescMessage, type Message, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryWriter, configureTextEncoding, getTextEncoding, WireType } from "@bufbuild/protobuf/wire";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FieldOptions_JSType,
  FileDescriptorProtoSchema,
  file_google_protobuf_struct,
  file_google_protobuf_wrappers,
  isWrapperDesc,
  timestampFromMs,
  FieldDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { describe, expect, it, vi } from "vitest";
import { BATON_FILES, messagesOf, prng } from "../helpers/proto-types.js";
import { TaskSchema, TaskState } from "../../gen/baton/v1/control_pb.js";
import { Action, Priority } from "../../gen/baton/v1/common_pb.js";
import { CoordinationDirectiveSchema } from "../../gen/baton/v1/coordination_pb.js";
import { DeliveryState, JournalDirectiveSchema } from "../../gen/baton/v1/journal_pb.js";
import { CoordinatorMessageSchema } from "../../gen/baton/v1/session_pb.js";
import { encodeBinary } from "../../src/rpc/fast-binary.js";
import { installFastUtf8 } from "../../src/rpc/utf8.js";

// toBinary counted, so that a test can tell the native path from the fallback to toBinary.
const counted = vi.hoisted(() => ({ toBinary: 0 }));
vi.mock("@bufbuild/protobuf", async (importOriginal) => {
  const real = await importOriginal<typeof import("@bufbuild/protobuf")>();
  return { ...real, toBinary: (...args: Parameters<typeof real.toBinary>) => (counted.toBinary++, real.toBinary(...args)) };
});

// What baton's protos do not use, so that every branch of the encoder meets toBinary:
// every scalar type (singular, proto3 optional, packed), jstype strings, map keys of every
// kind, wrappers (unboxed and not), Struct in lists, maps and oneofs, Value and ListValue;
// and proto2: explicit presence with defaults, required fields, unpacked lists, a group.
function testFiles(): { proto3: DescMessage; proto2: DescMessage } {
  const scalars: [string, Type][] = [
    ["d", Type.DOUBLE], ["f", Type.FLOAT], ["i64", Type.INT64], ["u64", Type.UINT64], ["i32", Type.INT32], ["fx64", Type.FIXED64],
    ["fx32", Type.FIXED32], ["b", Type.BOOL], ["s", Type.STRING], ["by", Type.BYTES], ["u32", Type.UINT32], ["sfx32", Type.SFIXED32],
    ["sfx64", Type.SFIXED64], ["si32", Type.SINT32], ["si64", Type.SINT64],
  ];
  type FieldInit = MessageInitShape<typeof FieldDescriptorProtoSchema>;
  const field = (name: string, number: number, type: Type, more: FieldInit = {}): FieldInit => ({ name, number, type, label: Label.OPTIONAL, jsonName: name, ...more });
  const fields: FieldInit[] = [];
  const oneofDecl: { name: string }[] = [{ name: "pick" }];
  let n = 1;
  for (const [name, type] of scalars) {
    fields.push(field(name, n++, type));
    fields.push(field(`rep_${name}`, n++, type, { label: Label.REPEATED }));
    oneofDecl.push({ name: `_opt_${name}` });
    fields.push(field(`opt_${name}`, n++, type, { proto3Optional: true, oneofIndex: oneofDecl.length - 1 }));
  }
  const wrappers = ["DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value", "BoolValue", "StringValue", "BytesValue"];
  for (const w of wrappers) fields.push(field(`w_${w}`, n++, Type.MESSAGE, { typeName: `.google.protobuf.${w}` }));
  const msg = (typeName: string) => ({ type: Type.MESSAGE, typeName });
  fields.push(
    field("js_i64", n++, Type.INT64, { options: { jstype: FieldOptions_JSType.JS_STRING } as never }),
    field("js_u64s", n++, Type.UINT64, { label: Label.REPEATED, options: { jstype: FieldOptions_JSType.JS_STRING } as never }),
    field("rep_w", n++, Type.MESSAGE, { label: Label.REPEATED, typeName: ".google.protobuf.Int32Value" }),
    field("st", n++, Type.MESSAGE, { typeName: ".google.protobuf.Struct" }),
    field("rep_st", n++, Type.MESSAGE, { label: Label.REPEATED, typeName: ".google.protobuf.Struct" }),
    field("val", n++, Type.MESSAGE, { typeName: ".google.protobuf.Value" }),
    field("lst", n++, Type.MESSAGE, { typeName: ".google.protobuf.ListValue" }),
    field("self", n++, Type.MESSAGE, { typeName: ".test.fastbin.All" }),
    field("o_st", n++, Type.MESSAGE, { typeName: ".google.protobuf.Struct", oneofIndex: 0 }),
    field("o_w", n++, Type.MESSAGE, { typeName: ".google.protobuf.StringValue", oneofIndex: 0 }),
    field("o_i64", n++, Type.SINT64, { oneofIndex: 0 }),
    field("o_e", n++, Type.ENUM, { typeName: ".test.fastbin.Color", oneofIndex: 0 }),
    field("color", n++, Type.ENUM, { typeName: ".test.fastbin.Color" }),
    field("colors", n++, Type.ENUM, { label: Label.REPEATED, typeName: ".test.fastbin.Color" }),
  );
  const maps: [string, Type, Type | { type: Type; typeName: string }][] = [
    ["m_i64", Type.INT64, Type.STRING], ["m_u64", Type.UINT64, Type.FIXED32], ["m_b", Type.BOOL, Type.INT32], ["m_i32", Type.INT32, Type.DOUBLE],
    ["m_si32", Type.SINT32, Type.SFIXED64], ["m_fx64", Type.FIXED64, Type.BYTES], ["m_s_st", Type.STRING, msg(".google.protobuf.Struct")],
    ["m_u32_self", Type.UINT32, msg(".test.fastbin.All")], ["m_s_w", Type.STRING, msg(".google.protobuf.BoolValue")], ["m_s_e", Type.STRING, { type: Type.ENUM, typeName: ".test.fastbin.Color" }],
  ];
  const nested = maps.map(([name, key, value]) => {
    const v = typeof value === "number" ? { type: value } : value;
    fields.push(field(name, n++, Type.MESSAGE, { label: Label.REPEATED, typeName: `.test.fastbin.All.${name}Entry` }));
    return { name: `${name}Entry`, field: [field("key", 1, key), field("value", 2, v.type, "typeName" in v ? { typeName: v.typeName } : {})], options: { mapEntry: true } };
  });
  const file3 = create(FileDescriptorProtoSchema, {
    name: "test/fastbin3.proto",
    package: "test.fastbin",
    syntax: "proto3",
    dependency: ["google/protobuf/struct.proto", "google/protobuf/wrappers.proto"],
    enumType: [{ name: "Color", value: [{ name: "COLOR_UNSPECIFIED", number: 0 }, { name: "RED", number: 1 }, { name: "BLUE", number: -7 }] }],
    messageType: [{ name: "All", field: fields, oneofDecl, nestedType: nested }],
  });
  const file2 = create(FileDescriptorProtoSchema, {
    name: "test/fastbin2.proto",
    package: "test.fastbin2",
    syntax: "proto2",
    messageType: [
      {
        name: "Legacy",
        field: [
          field("req", 1, Type.INT32, { label: Label.REQUIRED }),
          field("name", 2, Type.STRING, { defaultValue: "anon" }),
          field("count", 3, Type.INT64, { defaultValue: "7" }),
          field("nums", 4, Type.INT32, { label: Label.REPEATED }),
          field("packed", 5, Type.SINT32, { label: Label.REPEATED, options: { packed: true } as never }),
          field("child", 6, Type.MESSAGE, { typeName: ".test.fastbin2.Legacy" }),
          field("grp", 7, Type.GROUP, { typeName: ".test.fastbin2.Legacy.Grp" }),
        ],
        nestedType: [{ name: "Grp", field: [field("x", 8, Type.UINT32)] }],
      },
      { name: "Holder", field: [field("legacy", 1, Type.MESSAGE, { typeName: ".test.fastbin2.Legacy" }), field("list", 2, Type.MESSAGE, { label: Label.REPEATED, typeName: ".test.fastbin2.Legacy" })] },
    ],
  });
  const deps: Record<string, DescFile> = { "google/protobuf/struct.proto": file_google_protobuf_struct, "google/protobuf/wrappers.proto": file_google_protobuf_wrappers };
  const proto3 = createFileRegistry(file3, (name) => deps[name]).getMessage("test.fastbin.All")!;
  const proto2 = createFileRegistry(file2, () => undefined).getMessage("test.fastbin2.Holder")!;
  return { proto3, proto2 };
}

/** mulberry32: a small seeded PRNG, so a failure can be replayed. */

const STRINGS = ["", "a", "task-0001", "spiffe://baton.test/agent/a1", "héllo wörld", "日本語のテキスト", "emoji 🎉🚀", "x".repeat(64), "y".repeat(65), "é".repeat(70), "mixed ascii then ü", "\u0000nul", "\u007f", "z".repeat(127), "z".repeat(128), "a".repeat(126) + "é", "b".repeat(127) + "é"];
const DOUBLES = [0, -0, 1, -1, 1.5, Number.NaN, Infinity, -Infinity, 2 ** 53, 1e-300, 123456.789, Number.MAX_VALUE];
const FLOATS = [0, -0, 1.5, -2.25, Number.NaN, Infinity, -Infinity, 3.4028234663852886e38, Math.fround(0.1)];
const INT32S = [0, -1, 1, 127, 128, 300, 2 ** 31 - 1, -(2 ** 31), 16384, -300];
const UINT32S = [0, 1, 127, 128, 2 ** 31, 2 ** 32 - 1, 65535];
const INT64S = [0n, -1n, 1n, 127n, 128n, 2n ** 31n, 2n ** 32n, 2n ** 32n - 1n, 2n ** 63n - 1n, -(2n ** 63n), 1_700_000_000n, -(2n ** 40n)];
const UINT64S = [0n, 1n, 128n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 64n - 1n, 2n ** 63n];

/** Random messages of any schema: each field set with probability 0.6, nested up to depth 4. */
class Gen {
  /** Whether fromBinary of the encoding must equal the message (NaN equals nothing). */
  exact = true;
  constructor(private readonly r: () => number) {}

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.r() * items.length)]!;
  }

  private count(): number {
    return Math.floor(this.r() * 4);
  }

  message(desc: DescMessage, depth: number): Message {
    const init: Record<string, unknown> = {};
    for (const member of desc.members) {
      if (this.r() > 0.6) continue;
      if (member.kind === "oneof") {
        const f = this.pick(member.fields);
        const value = this.single(f, depth, true);
        if (value !== undefined) init[member.localName] = { case: f.localName, value };
      } else {
        const value = this.value(member, depth);
        if (value !== undefined) init[member.localName] = value;
      }
    }
    return create(desc, init);
  }

  private single(f: DescField, depth: number, inOneof: boolean): unknown {
    switch (f.fieldKind) {
      case "scalar":
        return this.scalar(f.scalar, f.longAsString);
      case "enum":
        return this.r() < 0.1 ? 99 : this.pick(f.enum.values).number;
      case "message":
        return this.sub(f.message, f.parent, depth, !inOneof && isWrapperDesc(f.message));
      default:
        return undefined;
    }
  }

  private value(f: DescField, depth: number): unknown {
    switch (f.fieldKind) {
      case "list": {
        const items: unknown[] = [];
        for (let i = this.count(); i > 0; i--) {
          const item = f.listKind === "scalar" ? this.scalar(f.scalar, f.longAsString) : f.listKind === "enum" ? this.pick(f.enum.values).number : this.sub(f.message, f.parent, depth, false);
          if (item !== undefined) items.push(item);
        }
        return items;
      }
      case "map": {
        const map: Record<string, unknown> = {};
        for (let i = this.count(); i > 0; i--) {
          const key = f.mapKey === ScalarType.STRING ? this.pick(STRINGS) : f.mapKey === ScalarType.BOOL ? String(this.r() < 0.5) : String(this.scalar(f.mapKey, false));
          const item = f.mapKind === "scalar" ? this.scalar(f.scalar, false) : f.mapKind === "enum" ? this.pick(f.enum.values).number : this.sub(f.message, f.parent, depth, false);
          if (item !== undefined) map[key] = item;
        }
        return map;
      }
      default:
        return this.single(f, depth, false);
    }
  }

  /** A message value as the generated shape holds it: a JSON object for a Struct, the bare scalar for an unboxed wrapper. */
  private sub(desc: DescMessage, parent: DescMessage, depth: number, unboxed: boolean): unknown {
    if (unboxed) return this.scalar(desc.fields[0]!.fieldKind === "scalar" ? desc.fields[0]!.scalar : ScalarType.INT32, false);
    if (depth >= 4) return undefined;
    if (desc.typeName === "google.protobuf.Struct" && parent.typeName !== "google.protobuf.Value") return this.jsonObject(depth + 1);
    return this.message(desc, depth + 1);
  }

  private jsonObject(depth: number): Record<string, unknown> {
    const obj: Record<string, unknown> = {};
    for (let i = this.count(); i > 0; i--) obj[this.pick(STRINGS)] = this.json(depth);
    return obj;
  }

  private json(depth: number): unknown {
    const kind = Math.floor(this.r() * (depth < 4 ? 6 : 4));
    switch (kind) {
      case 0:
        return null;
      case 1:
        return this.scalar(ScalarType.DOUBLE, false);
      case 2:
        return this.pick(STRINGS);
      case 3:
        return this.r() < 0.5;
      case 4:
        return Array.from({ length: this.count() }, () => this.json(depth + 1));
      default:
        return this.jsonObject(depth + 1);
    }
  }

  private scalar(type: ScalarType, longAsString: boolean): unknown {
    const long = (v: bigint) => (longAsString ? String(v) : v);
    switch (type) {
      case ScalarType.STRING:
        return this.r() < 0.2 ? Array.from({ length: this.count() * 20 }, () => String.fromCharCode(32 + Math.floor(this.r() * 95))).join("") : this.pick(STRINGS);
      case ScalarType.BOOL:
        return this.r() < 0.5;
      case ScalarType.BYTES:
        return Uint8Array.from({ length: Math.floor(this.r() * 200) * (this.r() < 0.3 ? 1 : 0) }, () => Math.floor(this.r() * 256));
      case ScalarType.DOUBLE:
      case ScalarType.FLOAT: {
        const v = this.pick(type === ScalarType.DOUBLE ? DOUBLES : FLOATS);
        if (Number.isNaN(v)) this.exact = false;
        return v;
      }
      case ScalarType.INT32:
      case ScalarType.SINT32:
      case ScalarType.SFIXED32:
        return this.pick(INT32S);
      case ScalarType.UINT32:
      case ScalarType.FIXED32:
        return this.pick(UINT32S);
      case ScalarType.UINT64:
      case ScalarType.FIXED64:
        return long(this.pick(UINT64S));
      default:
        return long(this.pick(INT64S));
    }
  }
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/** Encodings that went to toBinary although toBinary succeeded: none are expected for proto3 messages. */
let fallbacks = 0;

/** encodeBinary agrees with toBinary: the same bytes, or the same error. */
function expectSame(schema: DescMessage, message: Message): Uint8Array | undefined {
  let expected: Uint8Array;
  try {
    expected = toBinary(schema, message);
  } catch (e) {
    expect(() => encodeBinary(schema, message)).toThrow((e as Error).message);
    return undefined;
  }
  const before = counted.toBinary;
  const actual = encodeBinary(schema, message);
  if (counted.toBinary !== before) fallbacks++;
  if (Buffer.compare(actual, expected) !== 0) expect(hex(actual)).toBe(hex(expected));
  return actual;
}

installFastUtf8();

describe("encodeBinary against toBinary", () => {
  it("every baton.v1 message type, random messages", () => {
    const types = messagesOf(BATON_FILES);
    expect(types.length).toBeGreaterThan(80);
    fallbacks = 0;
    let checked = 0;
    for (const [index, type] of types.entries()) {
      const gen = new Gen(prng(1000 + index));
      for (let i = 0; i < 40; i++) {
        gen.exact = true;
        const msg = gen.message(type, 0);
        const bytes = expectSame(type, msg);
        if (bytes !== undefined && gen.exact) expect(equals(type, fromBinary(type, bytes), msg)).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(3000);
    expect(fallbacks).toBe(0);
  });

  it("every scalar, map key, wrapper and Struct placement, and proto2 presence, random messages", () => {
    const { proto3, proto2 } = testFiles();
    const gen = new Gen(prng(7));
    let errors = 0;
    fallbacks = 0;
    for (const type of [proto3, proto2]) {
      for (let i = 0; i < 600; i++) {
        gen.exact = true;
        const msg = gen.message(type, 0);
        const bytes = expectSame(type, msg);
        if (bytes === undefined) errors++;
        else if (gen.exact && type === proto3) expect(equals(type, fromBinary(type, bytes), msg)).toBe(true);
      }
      // proto2's Legacy has a group, so it is left to toBinary; All is encoded natively.
      if (type === proto3) expect(fallbacks).toBe(0);
      else expect(fallbacks).toBeGreaterThan(0);
    }
    // Unset proto2 required fields make toBinary throw: encodeBinary must throw the same.
    expect(errors).toBeGreaterThan(0);
    expect(errors).toBeLessThan(600);
  });

  it("values toBinary rejects throw its error", () => {
    const { proto3 } = testFiles();
    const bad: Record<string, unknown>[] = [{ i32: 1.5 }, { u32: -1 }, { f: 1e39 }, { i64: 2n ** 64n }, { u64: -1n }, { by: "x" }, { mI32: { abc: 1 } }, { self: 3 }];
    for (const fields of bad) expect(expectSame(proto3, Object.assign(create(proto3), fields))).toBeUndefined();
    // And what it accepts though the types say otherwise, it encodes the same.
    for (const fields of [{ s: 5 }, { i32: "12" }, { d: "1.5" }, { i64: 5 }, { b: "yes" }, { mB: { maybe: 1 } }]) expect(expectSame(proto3, Object.assign(create(proto3), fields))).toBeDefined();
  });
});

const NOW = timestampFromMs(1_760_000_000_123);

describe("baton's hot messages", () => {
  it("a task with a spec, an input Struct and attempts", () => {
    const task = create(TaskSchema, {
      spec: { taskId: "3b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed", requiredCapabilities: ["python", "gpu"], labels: { team: "a", "é": "ü" }, input: { prompt: "hello", n: 3, nested: { list: [1, "two", null, true, { deep: [] }] } } },
      state: TaskState.RUNNING,
      submitter: "spiffe://baton.test/operator/op",
      assignedAgents: ["a1"],
      attempts: [
        { attempt: 1, agents: ["a1"], directiveIds: ["d1"], startedAt: NOW, endedAt: NOW, outcome: "failed", reason: "timeout" },
        { attempt: 2, agents: ["a1", "a2"], directiveIds: ["d2", "d3"], startedAt: NOW },
      ],
      result: { ok: true, score: 0.5 },
      createdAt: NOW,
      updatedAt: NOW,
    });
    expectSame(TaskSchema, task);
    expectSame(TaskSchema, create(TaskSchema, { ...task, spec: undefined }));
  });

  it("a journal directive assigning a task, and a coordinator message carrying it", () => {
    const directive = create(CoordinationDirectiveSchema, {
      directiveId: "d-1",
      timestamp: NOW,
      targetAgent: "agent-1",
      action: Action.ASSIGN_TASK,
      parameters: { kind: { case: "assignTask", value: { taskId: "t-1", priority: Priority.HIGH, resources: ["cpu"], input: { work_seconds: 2 }, deadline: NOW, requiredCapabilities: ["python"] } } },
      sequence: 42n,
      attempt: 1,
      correlationId: "c-1",
    });
    expectSame(JournalDirectiveSchema, create(JournalDirectiveSchema, { directive, agentId: "agent-1", sessionId: "s-1", state: DeliveryState.SENT, taskId: "t-1", taskAttempt: 1 }));
    expectSame(CoordinatorMessageSchema, create(CoordinatorMessageSchema, { kind: { case: "directive", value: directive } }));
    expectSame(CoordinatorMessageSchema, create(CoordinatorMessageSchema, { kind: { case: "cancel", value: {} } }));
    expectSame(CoordinatorMessageSchema, create(CoordinatorMessageSchema));
  });

  it("empty messages of every type encode to nothing", () => {
    for (const type of messagesOf(BATON_FILES)) expect(encodeBinary(type, create(type))).toEqual(new Uint8Array(0));
  });

  it("unknown fields, at the top and nested, are written last as toBinary does", () => {
    const w = new BinaryWriter();
    w.tag(1, WireType.LengthDelimited).string("d-1");
    w.tag(900, WireType.Varint).uint64(12345n);
    w.tag(901, WireType.LengthDelimited).bytes(new Uint8Array([1, 2, 3]));
    const directive = fromBinary(CoordinationDirectiveSchema, w.finish());
    expect(directive.$unknown?.length).toBe(2);
    expectSame(CoordinationDirectiveSchema, directive);
    expectSame(JournalDirectiveSchema, create(JournalDirectiveSchema, { directive, agentId: "a" }));
  });

  it("Struct keys named __proto__ are dropped, as toBinary drops them", () => {
    const input = JSON.parse('{"a": 1, "__proto__": {"x": 2}, "b": {"__proto__": 3}}') as Record<string, unknown>;
    const directive = create(CoordinationDirectiveSchema, { parameters: { kind: { case: "assignTask", value: { taskId: "t", input: input as never } } } });
    expectSame(CoordinationDirectiveSchema, directive);
  });

  it("long lengths: nested messages over 127 bytes, 16 KiB and 2 MiB", () => {
    for (const size of [100, 200, 20_000, 3_000_000]) {
      const task = create(TaskSchema, { spec: { taskId: "t", input: { blob: "z".repeat(size), inner: { more: "é".repeat(size >> 2) } } }, result: { [String(size)]: [size] } });
      expectSame(TaskSchema, task);
    }
  });

  it("uses the configured text encoding, as BinaryWriter.string does, for all but short ASCII (the same bytes under any encoder)", () => {
    const standard = getTextEncoding();
    const seen: string[] = [];
    configureTextEncoding({ ...standard, encodeUtf8: (text: string) => (seen.push(text), standard.encodeUtf8(text)) });
    try {
      const long = "l".repeat(128);
      expectSame(TaskSchema, create(TaskSchema, { submitter: "op", assignedAgents: ["a1", "ä2", long] }));
      // toBinary encodes all four; the fast encoder only the non-ASCII one and the long one.
      expect(seen.sort()).toEqual(["a1", "op", "ä2", "ä2", long, long].sort());
    } finally {
      configureTextEncoding(standard);
    }
  });
});
