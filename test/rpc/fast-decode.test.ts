import { create, createFileRegistry, equals, fromBinary, ScalarType, toBinary, type DescField, type DescFile, type DescMessage, type Message, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryWriter, configureTextEncoding, getTextEncoding, WireType } from "@bufbuild/protobuf/wire";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FieldDescriptorProtoSchema,
  FileDescriptorProtoSchema,
  file_google_protobuf_struct,
  file_google_protobuf_wrappers,
  isWrapperDesc,
  ListValueSchema,
  StructSchema,
  timestampFromMs,
  ValueSchema,
} from "@bufbuild/protobuf/wkt";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { describe, expect, it, vi } from "vitest";
import { BATON_FILES, messagesOf, prng } from "../helpers/proto-types.js";
import { ListTasksRequestSchema, SubmitTaskRequestSchema, SubmitTasksRequestSchema, TaskState } from "../../gen/baton/v1/control_pb.js";
import { AgentState, ProgressStatus } from "../../gen/baton/v1/common_pb.js";
import { AckOutcome, CompletionStatus } from "../../gen/baton/v1/coordination_pb.js";
import { AgentReportsSchema, ConnectRequestSchema } from "../../gen/baton/v1/session_pb.js";
import { decodeBinary } from "../../src/rpc/fast-decode.js";
import { installFastUtf8 } from "../../src/rpc/utf8.js";

// fromBinary counted, so that a test can tell the native path from the fallback to fromBinary.
const counted = vi.hoisted(() => ({ fromBinary: 0 }));
vi.mock("@bufbuild/protobuf", async (importOriginal) => {
  const real = await importOriginal<typeof import("@bufbuild/protobuf")>();
  return { ...real, fromBinary: (...args: Parameters<typeof real.fromBinary>) => (counted.fromBinary++, real.fromBinary(...args)) };
});

/** What baton's protos lack: every scalar (singular, optional, repeated), wrappers, Struct in lists, maps and a oneof, odd map keys. */
function testMessage(): DescMessage {
  type FieldInit = MessageInitShape<typeof FieldDescriptorProtoSchema>;
  const field = (name: string, number: number, type: Type, more: FieldInit = {}): FieldInit => ({ name, number, type, label: Label.OPTIONAL, jsonName: name, ...more });
  const scalars = [Type.DOUBLE, Type.FLOAT, Type.INT64, Type.UINT64, Type.INT32, Type.FIXED64, Type.FIXED32, Type.BOOL, Type.STRING, Type.BYTES, Type.UINT32, Type.SFIXED32, Type.SFIXED64, Type.SINT32, Type.SINT64];
  const fields: FieldInit[] = [];
  const oneofDecl = [{ name: "pick" }];
  let n = 1;
  for (const type of scalars) {
    fields.push(field(`s${type}`, n++, type), field(`r${type}`, n++, type, { label: Label.REPEATED }));
    oneofDecl.push({ name: `_o${type}` });
    fields.push(field(`o${type}`, n++, type, { proto3Optional: true, oneofIndex: oneofDecl.length - 1 }));
  }
  for (const w of ["DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value", "BoolValue", "StringValue", "BytesValue"]) fields.push(field(`w${w}`, n++, Type.MESSAGE, { typeName: `.google.protobuf.${w}` }));
  const msg = { type: Type.MESSAGE };
  fields.push(
    field("st", n++, Type.MESSAGE, { typeName: ".google.protobuf.Struct" }),
    field("rst", n++, Type.MESSAGE, { label: Label.REPEATED, typeName: ".google.protobuf.Struct" }),
    field("val", n++, Type.MESSAGE, { typeName: ".google.protobuf.Value" }),
    field("rw", n++, Type.MESSAGE, { label: Label.REPEATED, typeName: ".google.protobuf.Int32Value" }),
    field("self", n++, Type.MESSAGE, { typeName: ".t.All" }),
    field("ost", n++, Type.MESSAGE, { typeName: ".google.protobuf.Struct", oneofIndex: 0 }),
    field("ow", n++, Type.MESSAGE, { typeName: ".google.protobuf.StringValue", oneofIndex: 0 }),
    field("oself", n++, Type.MESSAGE, { typeName: ".t.All", oneofIndex: 0 }),
    field("oi", n++, Type.SINT64, { oneofIndex: 0 }),
  );
  const maps: [string, Type, Type, string?][] = [["mi64", Type.INT64, Type.STRING], ["mb", Type.BOOL, Type.BYTES], ["mu32", Type.UINT32, Type.MESSAGE, ".t.All"], ["mst", Type.STRING, Type.MESSAGE, ".google.protobuf.Struct"], ["mw", Type.SINT32, Type.MESSAGE, ".google.protobuf.BoolValue"]];
  const nestedType = maps.map(([name, key, value, typeName]) => {
    fields.push(field(name, n++, Type.MESSAGE, { label: Label.REPEATED, typeName: `.t.All.${name}Entry` }));
    return { name: `${name}Entry`, field: [field("key", 1, key), field("value", 2, value === Type.MESSAGE ? msg.type : value, typeName ? { typeName } : {})], options: { mapEntry: true } };
  });
  const file = create(FileDescriptorProtoSchema, {
    name: "t/all.proto",
    package: "t",
    syntax: "proto3",
    dependency: ["google/protobuf/struct.proto", "google/protobuf/wrappers.proto"],
    messageType: [{ name: "All", field: fields, oneofDecl, nestedType }],
  });
  const deps: Record<string, DescFile> = { "google/protobuf/struct.proto": file_google_protobuf_struct, "google/protobuf/wrappers.proto": file_google_protobuf_wrappers };
  return createFileRegistry(file, (name) => deps[name]).getMessage("t.All")!;
}

/** mulberry32, so a failure can be replayed. */

const STRINGS = ["", "a", "task-0001", "héllo", "日本語", "emoji 🎉", "x".repeat(70), "1", "-5", "true"];
const VALUES: Partial<Record<ScalarType, readonly unknown[]>> = {
  [ScalarType.DOUBLE]: [0, -0, 1.5, Number.NaN, -Infinity, 1e-300],
  [ScalarType.FLOAT]: [0, -2.25, Number.NaN, Infinity, Math.fround(0.1)],
  [ScalarType.INT32]: [0, -1, 127, 128, 2 ** 31 - 1, -(2 ** 31)],
  [ScalarType.UINT32]: [0, 1, 128, 2 ** 32 - 1],
  [ScalarType.INT64]: [0n, -1n, 128n, 2n ** 32n, 2n ** 63n - 1n, -(2n ** 63n)],
  [ScalarType.UINT64]: [0n, 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 64n - 1n],
};
const SAME: Partial<Record<ScalarType, ScalarType>> = { [ScalarType.SINT32]: ScalarType.INT32, [ScalarType.SFIXED32]: ScalarType.INT32, [ScalarType.FIXED32]: ScalarType.UINT32, [ScalarType.SINT64]: ScalarType.INT64, [ScalarType.SFIXED64]: ScalarType.INT64, [ScalarType.FIXED64]: ScalarType.UINT64 };

/** Random messages: each member set with probability 0.6, nested up to depth 3. */
class Gen {
  constructor(private readonly r: () => number) {}
  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.r() * items.length)]!;
  }
  private times<T>(make: () => T): T[] {
    return Array.from({ length: Math.floor(this.r() * 4) }, make);
  }
  message(desc: DescMessage, depth = 0): Message {
    const init: Record<string, unknown> = {};
    for (const m of desc.members) {
      if (this.r() > 0.6) continue;
      if (m.kind === "oneof") {
        const f = this.pick(m.fields);
        const value = this.single(f, depth, false);
        if (value !== undefined) init[m.localName] = { case: f.localName, value };
      } else if (m.fieldKind === "list") {
        init[m.localName] = this.times(() => (m.listKind === "message" ? this.sub(m.message, m.parent, depth, false) : m.listKind === "enum" ? this.pick(m.enum.values).number : this.scalar(m.scalar))).filter((v) => v !== undefined);
      } else if (m.fieldKind === "map") {
        const map: Record<string, unknown> = {};
        for (const _ of this.times(() => 0)) {
          const key = m.mapKey === ScalarType.STRING ? this.pick(STRINGS) : String(m.mapKey === ScalarType.BOOL ? this.r() < 0.5 : this.scalar(m.mapKey));
          const value = m.mapKind === "message" ? this.sub(m.message, m.parent, depth, false) : m.mapKind === "enum" ? this.pick(m.enum.values).number : this.scalar(m.scalar);
          if (value !== undefined) map[key] = value;
        }
        init[m.localName] = map;
      } else {
        const value = this.single(m, depth, true);
        if (value !== undefined) init[m.localName] = value;
      }
    }
    return create(desc, init);
  }
  private single(f: DescField, depth: number, unboxable: boolean): unknown {
    if (f.fieldKind === "scalar") return this.scalar(f.scalar);
    if (f.fieldKind === "enum") return this.r() < 0.1 ? 99 : this.pick(f.enum.values).number;
    if (f.fieldKind === "message") return this.sub(f.message, f.parent, depth, unboxable && isWrapperDesc(f.message));
    return undefined;
  }
  private sub(desc: DescMessage, parent: DescMessage, depth: number, unboxed: boolean): unknown {
    if (unboxed) return this.scalar((desc.fields[0] as { scalar: ScalarType }).scalar);
    if (depth >= 3) return undefined;
    if (desc.typeName === "google.protobuf.Struct" && parent.typeName !== "google.protobuf.Value") return this.json(depth, true);
    return this.message(desc, depth + 1);
  }
  private json(depth: number, object = false): unknown {
    const kind = object ? 5 : Math.floor(this.r() * (depth < 3 ? 6 : 4));
    if (kind === 0) return null;
    if (kind === 1) return this.pick(VALUES[ScalarType.DOUBLE]!);
    if (kind === 2) return this.pick(STRINGS);
    if (kind === 3) return this.r() < 0.5;
    if (kind === 4) return this.times(() => this.json(depth + 1));
    return Object.fromEntries(this.times(() => [this.pick(STRINGS), this.json(depth + 1)]));
  }
  private scalar(type: ScalarType): unknown {
    if (type === ScalarType.STRING) return this.pick(STRINGS);
    if (type === ScalarType.BOOL) return this.r() < 0.5;
    if (type === ScalarType.BYTES) return Uint8Array.from(this.times(() => Math.floor(this.r() * 256)));
    return this.pick(VALUES[SAME[type] ?? type]!);
  }
}

const ordered = (_: string, v: unknown) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? Array.from(v) : v);

/** decodeBinary agrees with fromBinary: the same message, or the same error. Returns whether it fell back. */
function expectSame(schema: DescMessage, bytes: Uint8Array): boolean {
  let expected: Message;
  try {
    expected = fromBinary(schema, bytes);
  } catch (e) {
    expect(() => decodeBinary(schema, bytes)).toThrow((e as Error).message);
    return true;
  }
  const again = fromBinary(schema, bytes);
  const before = counted.fromBinary;
  const actual = decodeBinary(schema, bytes);
  expect(actual).toStrictEqual(expected);
  expect(Object.getPrototypeOf(actual)).toBe(Object.getPrototypeOf(expected));
  // Key order too, at every depth (toStrictEqual does not look at it): Struct keys, fields set late.
  expect(JSON.stringify(actual, ordered)).toBe(JSON.stringify(expected, ordered));
  // NaN equals nothing, not even itself: as equal as a second fromBinary of the bytes is.
  expect(equals(schema, actual, expected)).toBe(equals(schema, again, expected));
  return counted.fromBinary !== before;
}

installFastUtf8();

describe("decodeBinary against fromBinary", () => {
  it("every baton.v1 message type, random messages, once and concatenated (merged)", () => {
    const types = messagesOf(BATON_FILES);
    expect(types.length).toBeGreaterThan(80);
    let [fallbacks, decoded] = [0, 0];
    for (const [index, type] of types.entries()) {
      const gen = new Gen(prng(1000 + index));
      for (let i = 0; i < 16; i++) {
        const a = toBinary(type, gen.message(type));
        const b = toBinary(type, gen.message(type));
        if (expectSame(type, a)) fallbacks++;
        // Two encodings back to back: last scalar wins, messages merge, lists append, map keys overwrite.
        if (expectSame(type, new Uint8Array([...a, ...b]))) fallbacks++;
        decoded += 2;
      }
    }
    expect(decoded).toBeGreaterThan(2500);
    expect(fallbacks).toBe(0);
  });

  it("every scalar, optional, wrapper and Struct placement, random messages", () => {
    const all = testMessage();
    const gen = new Gen(prng(7));
    for (let i = 0; i < 50; i++) {
      const a = toBinary(all, gen.message(all));
      expect(expectSame(all, a)).toBe(false);
      expect(expectSame(all, new Uint8Array([...a, ...toBinary(all, gen.message(all))]))).toBe(false);
    }
    for (const wkt of [StructSchema, ValueSchema, ListValueSchema]) expect(expectSame(wkt, toBinary(wkt, gen.message(wkt) as never))).toBe(false);
  });

  it("a Value's kind given twice: the last wins, a struct or list merges into the one before", () => {
    const value = (json: unknown) => toBinary(ValueSchema, fromJson(ValueSchema, json as JsonValue));
    const twice = [[{ a: 1 }, { b: 2 }], [{ a: 1, c: 0 }, { b: 2, a: 3 }], [[1], ["x"]], [{ a: 1 }, 5], [5, { a: 1 }], [[1], { a: [2] }], [null, "s"]];
    for (const [x, y] of twice) {
      expect(expectSame(ValueSchema, new Uint8Array([...value(x), ...value(y)]))).toBe(false);
      // And inside a Struct held as JSON: one entry's Value written in two parts.
      const parts = new Uint8Array([...value(x), ...value(y)]);
      const entry = new BinaryWriter().tag(1, WireType.LengthDelimited).string("k").tag(2, WireType.LengthDelimited).bytes(parts).finish();
      const struct = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(entry).finish();
      const request = new BinaryWriter().tag(1, WireType.LengthDelimited).fork().tag(9, WireType.LengthDelimited).bytes(struct).join().finish();
      expect(expectSame(SubmitTaskRequestSchema, request)).toBe(false);
    }
  });

  it('a "__proto__" map or Struct key is left to fromBinary, which sets a prototype with it or drops it', () => {
    const entry = (value: Uint8Array) => new BinaryWriter().tag(1, WireType.LengthDelimited).string("__proto__").tag(2, WireType.LengthDelimited).bytes(value).finish();
    const labels = new BinaryWriter().tag(7, WireType.LengthDelimited).bytes(entry(new TextEncoder().encode("x"))).finish();
    const struct = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(entry(toBinary(ValueSchema, fromJson(ValueSchema, { a: 1 })))).finish();
    for (const spec of [labels, new BinaryWriter().tag(9, WireType.LengthDelimited).bytes(struct).finish()]) {
      expect(expectSame(SubmitTaskRequestSchema, new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(spec).finish())).toBe(true);
    }
  });

  it("unpacked repeated scalars are read as packed ones are", () => {
    const w = new BinaryWriter();
    w.tag(1, WireType.Varint).int32(TaskState.RUNNING).tag(1, WireType.Varint).int32(99);
    w.tag(1, WireType.LengthDelimited).fork().int32(TaskState.PENDING).int32(-3).join();
    const bytes = w.finish();
    expect(expectSame(ListTasksRequestSchema, bytes)).toBe(false);
    expect(decodeBinary(ListTasksRequestSchema, bytes).states).toEqual([TaskState.RUNNING, 99, TaskState.PENDING, -3]);
  });

  it("unknown fields are kept in $unknown, aliasing the input as fromBinary's do", () => {
    const w = new BinaryWriter();
    w.tag(1, WireType.LengthDelimited).string("t-1");
    w.tag(900, WireType.Varint).uint64(12345n).tag(901, WireType.LengthDelimited).bytes(new Uint8Array([1, 2, 3]));
    w.tag(902, WireType.Bit32).fixed32(7).tag(903, WireType.Bit64).fixed64(8n);
    const spec = w.finish();
    const outer = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(spec).tag(77, WireType.Varint).int32(1).finish();
    expect(expectSame(SubmitTaskRequestSchema, outer)).toBe(false);
    const decoded = decodeBinary(SubmitTaskRequestSchema, outer);
    expect(decoded.task?.$unknown?.map((u) => u.no)).toEqual([900, 901, 902, 903]);
    expect(decoded.task?.$unknown?.[1]!.data.buffer).toBe(outer.buffer);
    // A group is left to fromBinary.
    expect(expectSame(SubmitTaskRequestSchema, new Uint8Array([0x0b, 0x08, 0x01, 0x0c]))).toBe(true);
  });

  it("bad input throws fromBinary's error: truncated, garbage, wrong wire types, invalid UTF-8", () => {
    const spec = toBinary(SubmitTaskRequestSchema, create(SubmitTaskRequestSchema, { task: { taskId: "t-1", labels: { a: "b" }, input: { x: [1, "y", { z: null }] } } }));
    for (let cut = 1; cut < spec.length; cut++) expectSame(SubmitTaskRequestSchema, spec.subarray(0, cut));
    const r = prng(3);
    for (let i = 0; i < 300; i++) expectSame(SubmitTaskRequestSchema, Uint8Array.from({ length: 1 + Math.floor(r() * 30) }, () => Math.floor(r() * 256)));
    const bad = [[0x0a, 0x05, 0x0a], [0x08, 0x01], [0x0a, 0x04, 0x0a, 0x02, 0xc3, 0x28], [0x00], [0x0f], [0xff, 0xff, 0xff, 0xff, 0xff, 0x01]];
    for (const bytes of bad) expect(expectSame(SubmitTaskRequestSchema, new Uint8Array(bytes))).toBe(true);
    expect(() => decodeBinary(SubmitTaskRequestSchema, new Uint8Array([0x0a, 0x05, 0x0a]))).toThrow("premature EOF");
    expect(() => decodeBinary(SubmitTaskRequestSchema, new Uint8Array([0x0a, 0x04, 0x0a, 0x02, 0xc3, 0x28]))).toThrow(TypeError);
    // Nesting past fromBinary's recursion limit.
    let deep = new Uint8Array(0);
    for (let i = 0; i < 60; i++) deep = new BinaryWriter().tag(6, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(deep).finish()).finish();
    expect(expectSame(ValueSchema, deep)).toBe(true);
  });

  it("empty input is the zero message", () => {
    for (const type of messagesOf(BATON_FILES)) expect(expectSame(type, new Uint8Array(0))).toBe(false);
  });

  it("uses the configured text encoding, as BinaryReader does", () => {
    const standard = getTextEncoding();
    let calls = 0;
    configureTextEncoding({ ...standard, decodeUtf8: (bytes: Uint8Array, strict?: boolean) => (calls++, standard.decodeUtf8(bytes, strict)) });
    try {
      decodeBinary(SubmitTaskRequestSchema, toBinary(SubmitTaskRequestSchema, create(SubmitTaskRequestSchema, { task: { taskId: "t", requiredCapabilities: ["a", "b"] } })));
      expect(calls).toBe(3);
    } finally {
      configureTextEncoding(standard);
    }
  });
});

const NOW = timestampFromMs(1_760_000_000_123);
const UUID = "3b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed";

function reports() {
  return create(AgentReportsSchema, {
    messageId: UUID,
    sentAt: NOW,
    sender: "agent-1",
    reports: [
      { kind: { case: "directiveAck", value: { directiveId: UUID, timestamp: NOW, sourceAgent: "agent-1", attempt: 2, sequence: 41n, outcome: AckOutcome.ACCEPTED } } },
      { kind: { case: "taskCompletion", value: { eventId: UUID, timestamp: NOW, sourceAgent: "agent-1", directiveId: UUID, taskId: "t-1", status: CompletionStatus.SUCCEEDED, result: { ok: true, rows: [1, 2.5, "three", null], nested: {} } } } },
      { kind: { case: "progressUpdate", value: { eventId: UUID, timestamp: NOW, sourceAgent: "agent-1", status: ProgressStatus.IN_PROGRESS, metrics: { completionPercentage: 50, custom: { rows: 10 } }, directiveId: UUID, taskId: "t-1" } } },
      { kind: { case: "statusResponse", value: { requestId: UUID, timestamp: NOW, sourceAgent: "agent-1", state: AgentState.ONLINE, inFlight: 1, activeDirectives: [UUID], resourceUtilization: 0.25, metrics: { cpu: 0.5 } } } },
    ],
  });
}

describe("baton's hot messages", () => {
  it("a ConnectRequest with reports, plain and signed", () => {
    const plain = create(ConnectRequestSchema, { kind: { case: "reports", value: reports() } });
    expect(expectSame(ConnectRequestSchema, toBinary(ConnectRequestSchema, plain))).toBe(false);
    expect(decodeBinary(ConnectRequestSchema, toBinary(ConnectRequestSchema, plain))).toStrictEqual(plain);
    const payload = toBinary(AgentReportsSchema, reports());
    const signed = toBinary(ConnectRequestSchema, create(ConnectRequestSchema, { kind: { case: "signedReports", value: { keyId: "k1", payload, signature: new Uint8Array(32).fill(7) } } }));
    expect(expectSame(ConnectRequestSchema, signed)).toBe(false);
    const envelope = decodeBinary(ConnectRequestSchema, signed).kind;
    expect(envelope.case === "signedReports" && envelope.value.payload.buffer === signed.buffer).toBe(true);
    expect(expectSame(AgentReportsSchema, payload)).toBe(false);
    // gRPC hands over Buffers: bytes fields are then Buffer subarrays, in both.
    expect(expectSame(ConnectRequestSchema, Buffer.from(signed))).toBe(false);
  });

  it("SubmitTaskRequest and SubmitTasksRequest with input Structs", () => {
    const spec = { taskId: UUID, priority: 2, requiredCapabilities: ["python"], labels: { team: "a" }, deadline: NOW, input: { prompt: "hello", n: 3, opts: { t: [true, false, null] } } };
    const one = create(SubmitTaskRequestSchema, { task: spec });
    expect(expectSame(SubmitTaskRequestSchema, toBinary(SubmitTaskRequestSchema, one))).toBe(false);
    expect(decodeBinary(SubmitTaskRequestSchema, toBinary(SubmitTaskRequestSchema, one))).toStrictEqual(one);
    const many = create(SubmitTasksRequestSchema, { tasks: Array.from({ length: 50 }, (_, i) => ({ ...spec, taskId: `t-${i}` })) });
    expect(expectSame(SubmitTasksRequestSchema, toBinary(SubmitTasksRequestSchema, many))).toBe(false);
  });
});
