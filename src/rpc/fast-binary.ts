import { protoInt64, ScalarType, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { isScalarZeroValue } from "@bufbuild/protobuf/reflect";
import { getTextEncoding } from "@bufbuild/protobuf/wire";
import { LIST, MAP, MESSAGE, MESSAGES, PACKED, planOf, SCALAR, WIRE, type Plan, type Step } from "./binary-plan.js";

// toBinary spends microseconds per message in reflect() (a wrapper per message, list and map),
// unsafeIsSet and BinaryWriter's fork/join (a Uint8Array per nested message), and baton encodes
// tasks and directives at every state change. This reads the plain message objects through a
// plan per schema and writes into one reused buffer, patching a nested message's length in at
// its end. The rules are to-binary.js's (v2.13.0): fields by number, presence as unsafeIsSet
// has it, reflect()'s conversions (unboxed wrappers, Struct as JSON), unknown fields last.
// Anything else (a value of the wrong type or out of range, a required field unset, a group)
// goes to toBinary whole, which throws its own error or encodes it.

type Fields = Record<string, unknown>;

/** Thrown to hand the message to toBinary. */
const DECLINE = new Error("fast-binary: declined");

// The writer: one buffer for every call (encoding is synchronous), copied out at the end.
const KEEP = 1 << 16;
let buf = new Uint8Array(1024);
let view = new DataView(buf.buffer);
let pos = 0;
let utf8: (text: string) => Uint8Array = getTextEncoding().encodeUtf8;

function ensure(n: number): void {
  if (pos + n <= buf.length) return;
  const bigger = new Uint8Array(Math.max(buf.length * 2, pos + n));
  bigger.set(buf.subarray(0, pos));
  buf = bigger;
  view = new DataView(buf.buffer);
}

/** Where the next `n` bytes go, already ensured. */
function take(n: number): number {
  pos += n;
  return pos - n;
}

/** An unsigned 32-bit varint; the caller has ensured 5 bytes. */
function varint(v: number): void {
  for (; v > 0x7f; v >>>= 7) buf[pos++] = (v & 0x7f) | 0x80;
  buf[pos++] = v;
}

/** A 64-bit varint of a value already made unsigned. */
function varint64(v: bigint): void {
  ensure(10);
  for (; v > 0x7fn; v >>= 7n) buf[pos++] = Number(v & 0x7fn) | 0x80;
  buf[pos++] = Number(v);
}

function tag(t: number): void {
  ensure(5);
  varint(t);
}

/** Writes the tag, reserves a length byte and returns where it is, for end(). */
function begin(t: number): number {
  tag(t);
  ensure(1);
  return pos++;
}

/** Writes the length of what follows `at`, moving it along when the length takes more than a byte. */
function end(at: number): void {
  const len = pos - at - 1;
  if (len < 0x80) {
    buf[at] = len;
    return;
  }
  const n = len < 1 << 14 ? 2 : len < 1 << 21 ? 3 : len < 1 << 28 ? 4 : 5;
  ensure(n - 1);
  buf.copyWithin(at + n, at + 1, pos);
  const after = pos + n - 1;
  pos = at;
  varint(len);
  pos = after;
}

/** Raw bytes; `length` says whether their length goes first. */
function bytes(data: Uint8Array, length: boolean): void {
  ensure(5 + data.length);
  if (length) varint(data.length);
  buf.set(data, take(data.length));
}

// Ids, topics and names are short ASCII: written in place, they cost no Uint8Array each
// (the one allocation per string left on the encode path). ASCII is the same bytes under
// any UTF-8 encoder; anything longer or wider goes through the configured one.
const ASCII_IN_PLACE = 127;

/** A string field's value: its length (one byte here) and its UTF-8 bytes. */
function string(text: string): void {
  const n = text.length;
  if (n <= ASCII_IN_PLACE) {
    ensure(1 + n);
    const start = pos;
    buf[pos++] = n;
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c > 0x7f) {
        pos = start;
        return bytes(utf8(text), true);
      }
      buf[pos++] = c;
    }
    return;
  }
  // The configured encoder, as BinaryWriter.string calls it: installFastUtf8 applies.
  bytes(utf8(text), true);
}

/** BinaryWriter's assertInt32 and assertUInt32: a string is read as a number. */
function int32(v: unknown, unsigned: boolean): number {
  const n = typeof v === "string" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n > (unsigned ? 0xffffffff : 0x7fffffff) || n < (unsigned ? 0 : -0x80000000)) throw DECLINE;
  return n;
}

/** A 64-bit integer as protoInt64 checks it (a bigint, or a string or number it parses), as its 64 bits. */
function int64(v: unknown, unsigned: boolean): bigint {
  return BigInt.asUintN(64, BigInt(unsigned ? protoInt64.uParse(v as bigint) : protoInt64.parse(v as bigint)));
}

/** One scalar value, as writeScalarValue writes it. */
function scalar(type: ScalarType, v: unknown): void {
  ensure(10);
  switch (type) {
    case ScalarType.STRING:
      if (typeof v !== "string") throw DECLINE;
      return string(v);
    case ScalarType.BYTES:
      if (!(v instanceof Uint8Array)) throw DECLINE;
      return bytes(v, true);
    case ScalarType.BOOL:
      buf[pos++] = v ? 1 : 0;
      return;
    case ScalarType.DOUBLE:
      return view.setFloat64(take(8), v as number, true);
    case ScalarType.FLOAT: {
      const n = typeof v === "string" ? Number(v) : v;
      if (typeof n !== "number" || (Number.isNaN(n) && typeof v === "string" && v !== "NaN") || (Number.isFinite(n) && Math.abs(n) > 3.4028234663852886e38)) throw DECLINE;
      return view.setFloat32(take(4), n, true);
    }
    case ScalarType.INT32: {
      const n = int32(v, false);
      // A negative int32 is sign-extended to ten bytes, as varint32write does.
      return n >= 0 ? varint(n) : varint64(BigInt.asUintN(64, BigInt(n)));
    }
    case ScalarType.UINT32:
      return varint(int32(v, true));
    case ScalarType.SINT32: {
      const n = int32(v, false);
      return varint(((n << 1) ^ (n >> 31)) >>> 0);
    }
    case ScalarType.FIXED32:
      return view.setUint32(take(4), int32(v, true), true);
    case ScalarType.SFIXED32:
      return view.setInt32(take(4), int32(v, false), true);
    case ScalarType.INT64:
    case ScalarType.UINT64:
      // Sequences, counters and Timestamp seconds fit in 32 bits: no bigint arithmetic for them.
      if (typeof v === "bigint" && v >= 0n && v <= 0xffffffffn) return varint(Number(v));
      return varint64(int64(v, type === ScalarType.UINT64));
    case ScalarType.SINT64: {
      const n = BigInt.asIntN(64, int64(v, false));
      return varint64(BigInt.asUintN(64, (n << 1n) ^ (n >> 63n)));
    }
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return view.setBigUint64(take(8), int64(v, type === ScalarType.FIXED64), true);
  }
}

/** A message value; reflect() would make an empty message of null or undefined, which is left to toBinary. */
function writeMessage(step: Step, v: unknown): void {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw DECLINE;
  const child = step.child!;
  if (child.delegate) {
    tag(step.tag);
    return bytes(toBinary(child.desc, v as never), true);
  }
  const at = begin(step.tag);
  if (step.json) jsonStruct(v as Fields);
  else fields(child, v as Fields);
  end(at);
}

/** google.protobuf.Struct from a JSON object, as wktStructToReflect builds it: map<string, Value> fields = 1. */
function jsonStruct(obj: Fields): void {
  for (const key of Object.keys(obj)) {
    // wktStructToReflect assigns `fields[key]`, which for "__proto__" sets a prototype, not an entry.
    if (key === "__proto__") continue;
    const entry = begin(0x0a);
    tag(0x0a);
    scalar(ScalarType.STRING, key);
    const value = begin(0x12);
    jsonValue(obj[key]);
    end(value);
    end(entry);
  }
}

/** google.protobuf.Value from JSON, its oneof `kind` by type; anything else (undefined, a bigint) is a Value with no kind. */
function jsonValue(v: unknown): void {
  if (typeof v === "number" || typeof v === "string" || typeof v === "boolean") {
    tag(typeof v === "number" ? 0x11 : typeof v === "string" ? 0x1a : 0x20);
    return scalar(typeof v === "number" ? ScalarType.DOUBLE : typeof v === "string" ? ScalarType.STRING : ScalarType.BOOL, v);
  }
  if (v === null) return tag(0x08), tag(0);
  if (typeof v !== "object") return;
  const at = begin(Array.isArray(v) ? 0x32 : 0x2a);
  if (!Array.isArray(v)) jsonStruct(v as Fields);
  else {
    for (const item of v as unknown[]) {
      const element = begin(0x0a);
      jsonValue(item);
      end(element);
    }
  }
  end(at);
}

/** A map key (a property name) as mapKeyToReflect turns it back into its type; 64-bit ones are parsed as they are written. */
function mapKey(type: ScalarType, key: string): unknown {
  if (type === ScalarType.BOOL) return key === "true" ? true : key === "false" ? false : key;
  if (type === ScalarType.STRING || type === ScalarType.INT64 || type === ScalarType.UINT64 || type === ScalarType.SINT64 || WIRE[type] === 1) return key;
  const n = Number.parseInt(key);
  return Number.isFinite(n) ? n : key;
}

const hasOwn = Object.prototype.hasOwnProperty;

/** Whether toBinary writes the step's field, and what it reads for it: unsafeIsSet and reflect's get(). */
function fields(plan: Plan, msg: Fields): void {
  const steps = plan.steps;
  for (let s = 0; s < steps.length; s++) {
    const step = steps[s]!;
    let v: unknown;
    if (step.oneof !== "") {
      const group = msg[step.oneof] as { case?: string; value?: unknown };
      if (group.case !== step.localName) continue;
      v = group.value;
    } else {
      v = msg[step.localName];
      if (step.explicit) {
        if (v === undefined || !hasOwn.call(msg, step.localName)) {
          if (step.required) throw DECLINE;
          continue;
        }
      } else if (step.kind === SCALAR) {
        if (step.isEnum ? v === step.zero : isScalarZeroValue(step.scalar, v)) continue;
      } else if (step.kind === MESSAGE) throw DECLINE; // toBinary: "message field with implicit presence"
    }
    switch (step.kind) {
      case SCALAR:
        tag(step.tag);
        scalar(step.scalar, step.isEnum ? (v ?? step.zero) : v === undefined ? step.zero : v);
        break;
      case MESSAGE:
        if (step.wrapped === 0) writeMessage(step, v);
        else {
          // reflect() boxes the bare value again, and the wrapper's own field has implicit presence.
          const at = begin(step.tag);
          if (!isScalarZeroValue(step.wrapped, v)) tag(8 | WIRE[step.wrapped]!), scalar(step.wrapped, v);
          end(at);
        }
        break;
      case LIST:
        for (const item of v as unknown[]) tag(step.tag), scalar(step.scalar, item);
        break;
      case PACKED: {
        const items = v as unknown[];
        if (items.length === 0) break;
        const at = begin(step.tag);
        for (let i = 0; i < items.length; i++) scalar(step.scalar, items[i]);
        end(at);
        break;
      }
      case MESSAGES:
        for (const item of v as unknown[]) writeMessage(step, item);
        break;
      case MAP:
        for (const key of Object.keys(v as Fields)) {
          const entry = begin(step.tag);
          tag(8 | WIRE[step.mapKey]!);
          scalar(step.mapKey, mapKey(step.mapKey, key));
          if (step.value !== null) writeMessage(step.value, (v as Fields)[key]);
          else tag(16 | WIRE[step.scalar]!), scalar(step.scalar, (v as Fields)[key]);
          end(entry);
        }
        break;
    }
  }
  const unknown = (msg as { $unknown?: { no: number; wireType: number; data: unknown }[] }).$unknown;
  for (const { no, wireType, data } of unknown ?? []) {
    if (!(data instanceof Uint8Array)) throw DECLINE;
    tag(((no << 3) | wireType) >>> 0);
    bytes(data, false);
  }
}

/** encodeBinary's bytes as a Buffer for grpc-js, over them and not a copy: they are a fresh array of their own. */
export function encodeBuffer<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Buffer {
  const bytes = encodeBinary(schema, message);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The message's protobuf binary encoding: the same bytes as toBinary(schema, message), made from a plan per schema. */
export function encodeBinary<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Uint8Array {
  const plan = planOf(schema);
  if (plan.delegate) return toBinary(schema, message);
  // Read per call, as each new BinaryWriter reads it, so that configureTextEncoding applies.
  utf8 = getTextEncoding().encodeUtf8;
  pos = 0;
  try {
    fields(plan, message as unknown as Fields);
  } catch {
    return toBinary(schema, message);
  }
  const out = buf.slice(0, pos);
  // A rare large message should not keep its buffer alive.
  if (buf.length > KEEP) {
    buf = new Uint8Array(1024);
    view = new DataView(buf.buffer);
  }
  return out;
}
