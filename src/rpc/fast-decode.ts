import { create, fromBinary, protoInt64, ScalarType, type DescField, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { scalarZeroValue } from "@bufbuild/protobuf/reflect";
import { getTextEncoding } from "@bufbuild/protobuf/wire";
import { isWrapperDesc } from "@bufbuild/protobuf/wkt";
import { WIRE } from "./binary-plan.js";
import { nestedType } from "./validate.js";

// fromBinary spends most of its time in reflect(): a ReflectMessage per message (and a create()
// behind it), a ReflectList or ReflectMap per repeated field read, a field lookup through a Map
// and reflect's conversions at every set(). This reads the bytes into the plain message objects
// through a plan per schema. The rules are from-binary.js's (v2.13.0): zero messages as create()
// makes them, last value wins, a repeated singular message merges, packed and unpacked lists,
// map entries overwrite, unboxed wrappers, Struct as JSON, unknown fields kept in $unknown, bytes
// aliasing the input as BinaryReader.bytes() returns them. Anything it does not take exactly
// (a wire type other than the field's, a group, a closed enum's unknown number, bytes running
// past their message, a "__proto__" key) goes to fromBinary whole, which throws its own error
// or decodes it its way.

type Fields = Record<string, unknown>;

/** Thrown to hand the bytes to fromBinary. */
const DECLINE = new Error("fast-decode: declined");

// What a step reads: a scalar or enum, a message, an unboxed wrapper, a Struct as JSON, scalars or enums, messages, Structs, a map.
const [SCALAR, MESSAGE, WRAPPED, JSON_STRUCT, LIST, MESSAGES, JSON_STRUCTS, MAP] = [0, 1, 2, 3, 4, 5, 6, 7] as const;


/** A field whose zero create() makes fresh for each message: a oneof, list, map or bytes. */
type Fresh = { readonly name: string; readonly kind: "oneof" | "list" | "map" | "bytes" };

interface Plan {
  readonly desc: DescMessage;
  /** Groups or jstype strings: left to fromBinary whole. */
  readonly delegate: boolean;
  /** create()'s message once, copied for each message when it is a plain object (not one with a prototype for defaults). */
  readonly template: Fields | null;
  readonly fresh: Fresh[];
  readonly byNumber: (Step | undefined)[];
}

/** One field: the wire type it takes and what it reads. */
class Step {
  readonly localName: string;
  readonly oneof: string; // its localName, or ""
  readonly kind: number = MESSAGE;
  readonly wire: number = 2;
  /** The scalar read (the field's, each element's, the map value's or an unboxed wrapper's); INT32 for enums. */
  readonly scalar: ScalarType = ScalarType.INT32;
  readonly strict: boolean; // utf8Validation, which BinaryReader.string takes as `strict`
  /** A closed enum's numbers: fromBinary puts another one in $unknown, so it is declined. */
  readonly closed: Set<number> | null = null;
  readonly child: Plan | null = null;
  readonly mapKey: ScalarType = ScalarType.STRING;
  readonly keyTag: number = 0;
  readonly valueTag: number = 0;
  readonly mapValue: number = 0; // 0 scalar, 1 enum, 2 message, 3 Struct as JSON
  readonly enumZero: number = 0;

  constructor(f: DescField) {
    this.localName = f.localName;
    this.oneof = f.oneof?.localName ?? "";
    this.strict = f.utf8Validation;
    const message = nestedType(f);
    // reflect() holds a Struct as JSON wherever its parent is not google.protobuf.Value.
    const json = message?.typeName === "google.protobuf.Struct" && f.parent.typeName !== "google.protobuf.Value";
    switch (f.fieldKind) {
      case "scalar":
        [this.kind, this.scalar, this.wire] = [SCALAR, f.scalar, WIRE[f.scalar]!];
        break;
      case "enum":
        [this.kind, this.wire] = [SCALAR, 0];
        if (!f.enum.open) this.closed = new Set(f.enum.values.map((v) => v.number));
        break;
      case "message":
        // Unboxed only outside a oneof, as messageToLocal does.
        if (f.oneof === undefined && isWrapperDesc(f.message)) {
          const value = f.message.fields[0] as DescField & { fieldKind: "scalar" };
          [this.kind, this.scalar, this.strict] = [WRAPPED, value.scalar, value.utf8Validation];
        } else if (json) this.kind = JSON_STRUCT;
        break;
      case "list":
        this.kind = f.listKind === "message" ? (json ? JSON_STRUCTS : MESSAGES) : LIST;
        if (f.listKind === "scalar") this.scalar = f.scalar;
        this.wire = f.listKind === "message" ? 2 : WIRE[this.scalar]!;
        break;
      case "map":
        [this.kind, this.mapKey, this.keyTag] = [MAP, f.mapKey, 8 | WIRE[f.mapKey]!];
        this.mapValue = f.mapKind === "scalar" ? 0 : f.mapKind === "enum" ? 1 : json ? 3 : 2;
        if (f.mapKind === "scalar") this.scalar = f.scalar;
        if (f.mapKind === "enum") this.enumZero = f.enum.values[0]!.number;
        this.valueTag = 16 | (f.mapKind === "scalar" ? WIRE[f.scalar]! : f.mapKind === "enum" ? 0 : 2);
        break;
    }
    if (message !== undefined && !json) this.child = planOf(message);
  }
}

const plans = new WeakMap<DescMessage, Plan>();

function planOf(desc: DescMessage): Plan {
  let plan = plans.get(desc);
  if (plan !== undefined) return plan;
  const delegate = desc.fields.some((f) => (f as { delimitedEncoding?: boolean }).delimitedEncoding === true || (f as { longAsString?: boolean }).longAsString === true);
  const template = create(desc) as unknown as Fields;
  const fresh: Fresh[] = [];
  for (const [name, v] of Object.entries(template)) {
    if (v !== null && typeof v === "object") fresh.push({ name, kind: Array.isArray(v) ? "list" : v instanceof Uint8Array ? "bytes" : "case" in v ? "oneof" : "map" });
  }
  plan = { desc, delegate, template: Object.getPrototypeOf(template) === Object.prototype ? template : null, fresh, byNumber: [] };
  // Cached before its steps are made, so that a recursive type finds itself.
  plans.set(desc, plan);
  for (const f of desc.fields) plan.byNumber[f.number] = new Step(f);
  return plan;
}

/** The message create(desc) gives. */
function zero(plan: Plan): Fields {
  if (plan.template === null) return create(plan.desc) as unknown as Fields;
  // A spread copies the scalars and keeps the property order, in one step.
  const msg: Fields = { ...plan.template };
  for (const f of plan.fresh) msg[f.name] = f.kind === "oneof" ? { case: undefined } : f.kind === "list" ? [] : f.kind === "map" ? {} : new Uint8Array(0);
  return msg;
}

// The reader: the bytes of the one decode running (decoding is synchronous).
const EMPTY: Uint8Array = new Uint8Array(0);
const EMPTY_VIEW = new DataView(EMPTY.buffer);
let [buf, view, pos, depth, lo, hi] = [EMPTY, EMPTY_VIEW, 0, 0, 0, 0]; // lo and hi: the last 64-bit varint read
let utf8: (bytes: Uint8Array, strict?: boolean) => string = getTextEncoding().decodeUtf8;

/** Past the bytes: BinaryReader's assertBounds throws, so fromBinary is left to throw it. */
function bounds(): void {
  if (pos > buf.length) throw DECLINE;
}

/** varint32read, to the bit: a fifth byte gives its low four bits, up to ten bytes are read. */
function u32(): number {
  let b = buf[pos++]!;
  if (b < 0x80) return b; // read from within the bytes: past them it is undefined
  let result = b & 0x7f;
  for (let shift = 7; shift < 28; shift += 7) {
    b = buf[pos++]!;
    result |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) return bounds(), result;
  }
  b = buf[pos++]!;
  result |= (b & 0x0f) << 28;
  for (let n = 5; (b & 0x80) !== 0 && n < 10; n++) b = buf[pos++]!;
  if ((b & 0x80) !== 0) throw DECLINE;
  bounds();
  return result >>> 0;
}

/** varint64read, to the bit, into `lo` and `hi`. */
function u64(): void {
  lo = hi = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    const b = buf[pos++]!;
    lo |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) return bounds();
  }
  const middle = buf[pos++]!;
  lo |= (middle & 0x0f) << 28;
  hi = (middle & 0x70) >> 4;
  if ((middle & 0x80) === 0) return bounds();
  for (let shift = 3; shift <= 31; shift += 7) {
    const b = buf[pos++]!;
    hi |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) return bounds();
  }
  throw DECLINE;
}

/** A tag as BinaryReader.tag() accepts it (at most five bytes, a field number, a wire type up to 5). */
function tag(): number {
  const start = pos;
  const t = u32();
  if (pos - start > 5 || (pos - start === 5 && buf[pos - 1]! > 0x0f) || t >>> 3 === 0 || (t & 7) > 5) throw DECLINE;
  return t;
}

/** Where `n` fixed bytes start, as a DataView reads them. */
function fixed(n: number): number {
  pos += n;
  bounds();
  return pos - n;
}

/** The end of a length-delimited value that must lie within `end`. */
function sub(end: number): number {
  const len = u32();
  if (pos + len > end) throw DECLINE;
  return pos + len;
}

/** One scalar value, as from-binary.js's readScalar reads it. */
function scalar(type: ScalarType, strict: boolean, end: number): unknown {
  switch (type) {
    case ScalarType.STRING:
    case ScalarType.BYTES: {
      const stop = sub(end);
      const data = buf.subarray(pos, (pos = stop));
      return type === ScalarType.BYTES ? data : utf8(data, strict);
    }
    case ScalarType.BOOL: return u64(), lo !== 0 || hi !== 0;
    case ScalarType.DOUBLE: return view.getFloat64(fixed(8), true);
    case ScalarType.FLOAT: return view.getFloat32(fixed(4), true);
    case ScalarType.INT32: return u32() | 0;
    case ScalarType.UINT32: return u32();
    case ScalarType.SINT32: {
      const z = u32();
      return (z >>> 1) ^ -(z & 1);
    }
    case ScalarType.FIXED32: return view.getUint32(fixed(4), true);
    case ScalarType.SFIXED32: return view.getInt32(fixed(4), true);
    case ScalarType.INT64:
    // protoInt64.dec and uDec, with no bigint arithmetic for what fits in 32 bits.
    case ScalarType.UINT64: return u64(), hi === 0 ? BigInt(lo >>> 0) : type === ScalarType.UINT64 ? protoInt64.uDec(lo, hi) : protoInt64.dec(lo, hi);
    case ScalarType.SINT64: {
      u64();
      const s = -(lo & 1);
      return protoInt64.dec(((lo >>> 1) | ((hi & 1) << 31)) ^ s, (hi >>> 1) ^ s);
    }
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64: {
      const at = fixed(8);
      const [l, h] = [view.getInt32(at, true), view.getInt32(at + 4, true)];
      return type === ScalarType.FIXED64 ? protoInt64.uDec(l, h) : protoInt64.dec(l, h);
    }
  }
  throw DECLINE;
}

/** readMessage's recursion limit (100): past it fromBinary throws. */
function enter(): void {
  if (++depth > 100) throw DECLINE;
}

/** The end of a message: its last field must end at its length, not run past it (fromBinary would read on). */
function leave(end: number): void {
  if (pos !== end) throw DECLINE;
  depth--;
}

/** Reads the fields up to `end` into `msg`, as readMessage does into a message it creates or merges into. */
function readInto(plan: Plan, msg: Fields, end: number): Fields {
  if (plan.delegate) throw DECLINE;
  enter();
  let unknown: { no: number; wireType: number; data: Uint8Array }[] | undefined;
  while (pos < end) {
    const t = tag();
    const no = t >>> 3;
    const wt = t & 7;
    const step = plan.byNumber[no];
    if (step === undefined) {
      unknown ??= (msg.$unknown as typeof unknown) ?? [];
      unknown.push({ no, wireType: wt, data: skip(wt, end) });
      continue;
    }
    if (wt !== step.wire && !(step.kind === LIST && wt === 2 && step.wire !== 2)) throw DECLINE;
    const name = step.localName;
    switch (step.kind) {
      case SCALAR: {
        const v = scalar(step.scalar, step.strict, end);
        if (step.closed !== null && !step.closed.has(v as number)) throw DECLINE;
        set(step, msg, v);
        break;
      }
      case MESSAGE:
        // A second occurrence merges into the first (a oneof's only while it holds this case).
        set(step, msg, readInto(step.child!, (get(step, msg) as Fields | undefined) ?? zero(step.child!), sub(end)));
        break;
      case WRAPPED: msg[name] = wrapper(step, msg[name], sub(end)); break;
      case JSON_STRUCT: set(step, msg, struct((get(step, msg) as Fields | undefined) ?? {}, sub(end))); break;
      case LIST: {
        const list = msg[name] as unknown[];
        if (wt !== 2 || step.wire === 2) list.push(scalar(step.scalar, step.strict, end));
        else {
          const stop = sub(end);
          while (pos < stop) list.push(scalar(step.scalar, step.strict, stop));
          if (pos !== stop) throw DECLINE;
        }
        break;
      }
      case MESSAGES: (msg[name] as unknown[]).push(readInto(step.child!, zero(step.child!), sub(end))); break;
      case JSON_STRUCTS: (msg[name] as unknown[]).push(struct({}, sub(end))); break;
      case MAP: entry(step, msg[name] as Fields, sub(end)); break;
    }
  }
  leave(end);
  if (unknown !== undefined) msg.$unknown = unknown;
  return msg;
}

function get(step: Step, msg: Fields): unknown {
  if (step.oneof === "") return msg[step.localName];
  const group = msg[step.oneof] as { case: string | undefined; value?: unknown };
  return group.case === step.localName ? group.value : undefined;
}

/** unsafeSet: a oneof gets a new `{ case, value }`. */
function set(step: Step, msg: Fields, v: unknown): void {
  if (step.oneof === "") msg[step.localName] = v;
  else msg[step.oneof] = { case: step.localName, value: v };
}

/** BinaryReader.skip for an unknown field: what follows its tag, aliasing the input. Groups are declined. */
function skip(wt: number, end: number): Uint8Array {
  const start = pos;
  if (wt === 0) while (buf[pos++]! & 0x80);
  else if (wt === 1) pos += 8;
  else if (wt === 5) pos += 4;
  else if (wt === 2) pos = sub(end);
  else throw DECLINE;
  if (pos > end) throw DECLINE;
  return buf.subarray(start, pos);
}

/** A wrapper held unboxed: fromBinary boxes the current value, merges the bytes into it and unboxes it. */
function wrapper(step: Step, current: unknown, end: number): unknown {
  enter();
  let v: unknown = current === undefined ? scalarZeroValue(step.scalar, false) : current;
  const valueTag = 8 | WIRE[step.scalar]!;
  while (pos < end) {
    // Unknown fields would be dropped with the box: declined rather than matched.
    if (tag() !== valueTag) throw DECLINE;
    v = scalar(step.scalar, step.strict, end);
  }
  leave(end);
  return v;
}

/** One map entry, as readMapEntry reads it: a missing key or value is its zero, a key is a property name. */
function entry(step: Step, map: Fields, end: number): void {
  let key: unknown;
  let value: unknown = undefined;
  while (pos < end) {
    const t = tag();
    if (t === step.keyTag) key = scalar(step.mapKey, step.strict, end);
    else if (t !== step.valueTag) throw DECLINE; // readMapEntry ignores other fields without skipping them
    else if (step.mapValue === 0) value = scalar(step.scalar, step.strict, end);
    else if (step.mapValue === 1) value = u32() | 0;
    else value = step.mapValue === 3 ? struct({}, sub(end)) : readInto(step.child!, zero(step.child!), sub(end));
  }
  if (pos !== end) throw DECLINE;
  key ??= scalarZeroValue(step.mapKey, false);
  value ??= step.mapValue === 0 ? scalarZeroValue(step.scalar, false) : step.mapValue === 1 ? step.enumZero : step.mapValue === 3 ? {} : zero(step.child!);
  const name = typeof key === "string" || typeof key === "number" ? key : String(key);
  if (name === "__proto__") throw DECLINE;
  map[name] = value;
}

// google.protobuf.Struct, Value and ListValue read straight into JSON, as wktStructToLocal leaves
// them: fields = 1 (map<string, Value>); Value's kind: null 1, number 2, string 3, bool 4, struct 5,
// list 6, where a Value without one is null; ListValue's values = 1. Their strings are validated.

/** Struct entries merged into `obj`, later keys overwriting earlier ones. */
function struct(obj: Fields, end: number): Fields {
  enter();
  while (pos < end) {
    if (tag() !== 0x0a) throw DECLINE;
    const stop = sub(end);
    let key = "";
    let value: unknown = null;
    while (pos < stop) {
      const t = tag();
      if (t === 0x0a) key = scalar(ScalarType.STRING, true, stop) as string;
      else if (t === 0x12) value = jsonValue(sub(stop));
      else throw DECLINE;
    }
    if (pos !== stop || key === "__proto__") throw DECLINE;
    obj[key] = value;
  }
  leave(end);
  return obj;
}

/** A Value as JSON; a repeated struct or list case merges into the one before, as a oneof message does. */
function jsonValue(end: number): unknown {
  enter();
  let v: unknown = null;
  while (pos < end) {
    const kind = tag();
    if (kind === 0x08) u32(), (v = null);
    else if (kind === 0x11) v = view.getFloat64(fixed(8), true);
    else if (kind === 0x1a) v = scalar(ScalarType.STRING, true, end);
    else if (kind === 0x20) u64(), (v = lo !== 0 || hi !== 0);
    else if (kind === 0x2a) v = struct(v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Fields) : {}, sub(end));
    else if (kind === 0x32) v = list(Array.isArray(v) ? v : [], sub(end));
    else throw DECLINE;
  }
  leave(end);
  return v;
}

function list(items: unknown[], end: number): unknown[] {
  enter();
  while (pos < end) {
    if (tag() !== 0x0a) throw DECLINE;
    items.push(jsonValue(sub(end)));
  }
  leave(end);
  return items;
}

/** The message the bytes encode: what fromBinary(schema, bytes) gives, read through a plan per schema. */
export function decodeBinary<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc> {
  const plan = planOf(schema);
  if (plan.delegate) return fromBinary(schema, bytes);
  // Read per call, as each new BinaryReader reads it, so that configureTextEncoding applies.
  utf8 = getTextEncoding().decodeUtf8;
  [buf, view, pos, depth] = [bytes, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0, 0];
  try {
    return readInto(plan, zero(plan), bytes.length) as MessageShape<Desc>;
  } catch {
    return fromBinary(schema, bytes);
  } finally {
    // The input is not kept alive by the module.
    [buf, view] = [EMPTY, EMPTY_VIEW];
  }
}
