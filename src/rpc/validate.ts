import { getOption, hasOption, ScalarType, type DescField, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { isScalarZeroValue } from "@bufbuild/protobuf/reflect";
import { Edition, FeatureSet_FieldPresence, isWrapperDesc } from "@bufbuild/protobuf/wkt";
import { field_behavior, FieldBehavior } from "../../gen/google/api/field_behavior_pb.js";
import { field_info, FieldInfo_Format } from "../../gen/google/api/field_info_pb.js";
import { invalidArgument, quote } from "../errors.js";

// RFC 9562 textual form. The annotation says UUID4 (AIP-202), but any version is
// accepted so that agents may use time-ordered UUIDv7 ids.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// google.protobuf.Timestamp's documented range: 0001-01-01 to 9999-12-31.
const MIN_SECONDS = -62135596800n;
const MAX_SECONDS = 253402300799n;

/** Longest id, name, token, label or address in any string field, characters. */
export const MAX_ID_CHARS = 256;
/** Longest free text (a reason, an error message), characters. */
export const MAX_TEXT_CHARS = 16_384;

// Free text by field name; every other string field names something, and names are short.
// WatchEvents topic patterns are bounded by the event log's own, documented limits.
const TEXT_FIELDS = new Set(["reason", "message", "description", "topics"]);

// Payloads: their size is bounded as a whole (limits.maxTaskSpecBytes), not string by string.
const PAYLOAD_TYPES = new Set(["google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"]);

// This runs on every request and every agent frame, so it reads the plain message objects
// (protobuf-es v2 messages are plain objects) through a plan compiled once per schema,
// rather than through reflect(), which wraps every nested message, list and map; and it
// builds a field path only for the violation it returns.

/** A message as the walk reads it: its fields by localName. */
type Fields = Record<string, unknown>;

// How a field's presence is told, as protobuf-es's isFieldSet does.
const IN_ONEOF = 0;
const EXPLICIT = 1;
const LIST = 2;
const MAP = 3;
const SCALAR = 4;
const ENUM = 5;

// What a plan checks.
const FIELDS = 0;
const TIMESTAMP = 1;
const DURATION = 2;

/** What the walk checks in messages of one schema. */
interface Plan {
  /** FIELDS, TIMESTAMP or DURATION. */
  readonly kind: number;
  /** What joins the field path to this message's violation: "." before a field's name, nothing for a Timestamp's or Duration's own. */
  readonly sep: string;
  /** The fields that have a check, or lead to a message that has one, in schema order. */
  readonly steps: Step[];
}

/** One field of a plan. */
class Step {
  constructor(
    /** The proto name, for paths. */
    readonly name: string,
    readonly localName: string,
    /** The oneof's localName, when the field is a oneof member; else "". */
    readonly oneof: string,
    /** IN_ONEOF, EXPLICIT, LIST, MAP, SCALAR or ENUM. */
    readonly presence: number,
    /** The scalar type, for SCALAR presence. */
    readonly scalar: ScalarType,
    /** The enum's first value, for ENUM presence. */
    readonly enumZero: number,
    /** Explicit presence also needs an own property (files other than proto3 keep defaults on the prototype). */
    readonly ownCheck: boolean,
    readonly required: boolean,
    readonly uuid: boolean,
    /** Most characters in each string (the field's, or each element's, key's and value's); 0 when it holds no strings. */
    readonly maxChars: number,
    /** A map whose keys are strings, so limited by maxChars too. */
    readonly stringKeys: boolean,
    /** The nested message's plan (the field's, each element's or each value's); null when none needs walking. */
    readonly child: Plan | null,
    /** A wrapper message (google/protobuf/wrappers.proto) that the message holds unboxed. */
    readonly unboxed: boolean,
  ) {}
}

const plans = new WeakMap<DescMessage, Plan | null>();

/** The plan for `desc`, compiled on first use; null when nothing in its messages is ever checked. */
function planOf(desc: DescMessage): Plan | null {
  let plan = plans.get(desc);
  if (plan !== undefined) return plan;
  if (!needsWalk(desc, new Set())) {
    plans.set(desc, null);
    return null;
  }
  const typeName = desc.typeName;
  const kind = typeName === "google.protobuf.Timestamp" ? TIMESTAMP : typeName === "google.protobuf.Duration" ? DURATION : FIELDS;
  plan = { kind, sep: kind === FIELDS ? "." : "", steps: [] };
  // Cached before its steps are filled, so that a recursive type finds itself.
  plans.set(desc, plan);
  if (kind === FIELDS) {
    for (const field of desc.fields) {
      const step = stepOf(field);
      if (step !== undefined) plan.steps.push(step);
    }
  }
  return plan;
}

/** Whether a message of `desc`, or one reachable from it, has anything to check (`seen`: types already looked at). */
function needsWalk(desc: DescMessage, seen: Set<DescMessage>): boolean {
  const typeName = desc.typeName;
  if (typeName === "google.protobuf.Timestamp" || typeName === "google.protobuf.Duration") return true;
  if (PAYLOAD_TYPES.has(typeName) || seen.has(desc)) return false;
  seen.add(desc);
  for (const field of desc.fields) {
    if (isRequired(field) || isUuid(field) || holdsStrings(field)) return true;
    const nested = nestedType(field);
    if (nested !== undefined && needsWalk(nested, seen)) return true;
  }
  return false;
}

function stepOf(field: DescField): Step | undefined {
  const required = isRequired(field);
  const uuid = isUuid(field);
  const maxChars = holdsStrings(field) ? (TEXT_FIELDS.has(field.name) ? MAX_TEXT_CHARS : MAX_ID_CHARS) : 0;
  const nested = nestedType(field);
  const child = nested === undefined ? null : planOf(nested);
  if (!required && !uuid && maxChars === 0 && child === null) return undefined;
  let presence: number;
  if (field.oneof !== undefined) presence = IN_ONEOF;
  else if (field.presence !== FeatureSet_FieldPresence.IMPLICIT) presence = EXPLICIT;
  else if (field.fieldKind === "list") presence = LIST;
  else if (field.fieldKind === "map") presence = MAP;
  else if (field.fieldKind === "enum") presence = ENUM;
  else if (field.fieldKind === "scalar") presence = SCALAR;
  else presence = EXPLICIT; // a singular message field always has explicit presence
  return new Step(
    field.name,
    field.localName,
    field.oneof?.localName ?? "",
    presence,
    field.fieldKind === "scalar" ? field.scalar : ScalarType.STRING,
    field.fieldKind === "enum" ? (field.enum.values[0]?.number ?? 0) : 0,
    field.parent.file.edition !== Edition.EDITION_PROTO3,
    required,
    uuid,
    maxChars,
    field.fieldKind === "map" && field.mapKey === ScalarType.STRING,
    child,
    field.fieldKind === "message" && field.oneof === undefined && isWrapperDesc(field.message),
  );
}

function isRequired(field: DescField): boolean {
  return hasOption(field, field_behavior) && getOption(field, field_behavior).includes(FieldBehavior.REQUIRED);
}

/** A UUID4-format string; the format means nothing on other kinds of field. */
function isUuid(field: DescField): boolean {
  return (
    field.fieldKind === "scalar" &&
    field.scalar === ScalarType.STRING &&
    hasOption(field, field_info) &&
    getOption(field, field_info).format === FieldInfo_Format.UUID4
  );
}

function holdsStrings(field: DescField): boolean {
  switch (field.fieldKind) {
    case "scalar":
      return field.scalar === ScalarType.STRING;
    case "list":
      return field.listKind === "scalar" && field.scalar === ScalarType.STRING;
    case "map":
      return field.mapKey === ScalarType.STRING || (field.mapKind === "scalar" && field.scalar === ScalarType.STRING);
    default:
      return false;
  }
}

/** The message type of a field, or of its elements or map values (redact.ts walks schemas by it too). */
export function nestedType(field: DescField): DescMessage | undefined {
  switch (field.fieldKind) {
    case "message":
      return field.message;
    case "list":
      return field.listKind === "message" ? field.message : undefined;
    case "map":
      return field.mapKind === "message" ? field.message : undefined;
    default:
      return undefined;
  }
}

/**
 * Checks what the schema's annotations ask: every `(google.api.field_behavior) = REQUIRED`
 * field present, every `(google.api.field_info).format = UUID4` field a UUID, and every
 * Timestamp and Duration in range, recursively; and that no string is longer than
 * MAX_ID_CHARS (MAX_TEXT_CHARS for free text), so that no id, token or reason a caller
 * sends can swell what is built from it. Returns the first violation as a message
 * naming the field path ("hello.agent_id is required"), or undefined.
 */
export function findViolation(desc: DescMessage, message: MessageShape<DescMessage>): string | undefined {
  const plan = planOf(desc);
  return plan === null ? undefined : walk(plan, message as unknown as Fields);
}

/** Throws INVALID_ARGUMENT naming the field when `message` breaks its schema's rules. */
export function assertValid<Desc extends DescMessage>(desc: Desc, message: MessageShape<Desc>): void {
  const violation = findViolation(desc, message);
  if (violation !== undefined) throw invalidArgument(`${desc.name}: ${violation}`);
}

/** The first violation in `msg`, its path relative to `msg` (a field's name first, or for a Timestamp or Duration what follows its own). */
function walk(plan: Plan, msg: Fields): string | undefined {
  if (plan.kind === TIMESTAMP) return checkTimestamp(msg);
  if (plan.kind === DURATION) return checkDuration(msg);
  const steps = plan.steps;
  for (let s = 0; s < steps.length; s++) {
    const step = steps[s]!;
    let value: unknown;
    if (step.presence === IN_ONEOF) {
      const group = msg[step.oneof] as { case: string | undefined; value?: unknown };
      if (group.case !== step.localName) {
        if (step.required) return `${step.name} is required`;
        continue;
      }
      value = group.value;
    } else {
      value = msg[step.localName];
      if (!isPresent(step, msg, value)) {
        if (step.required) return `${step.name} is required`;
        continue;
      }
    }
    const violation = step.presence === LIST ? checkList(step, value as unknown[]) : step.presence === MAP ? checkMap(step, value as Fields) : checkSingular(step, value);
    if (violation !== undefined) return violation;
  }
  return undefined;
}

/** A field outside any oneof is present as protobuf-es's isFieldSet says, and a list or map also only when not empty. */
function isPresent(step: Step, msg: Fields, value: unknown): boolean {
  switch (step.presence) {
    case EXPLICIT:
      return value !== undefined && (!step.ownCheck || Object.prototype.hasOwnProperty.call(msg, step.localName));
    case LIST:
      return (value as unknown[]).length > 0;
    case MAP:
      return hasKeys(value as Fields);
    case SCALAR:
      // proto3 scalars are "set" when non-zero; an empty string is absent.
      return !isScalarZeroValue(step.scalar, value);
    default:
      return value !== step.enumZero;
  }
}

function hasKeys(obj: Fields): boolean {
  for (const key in obj) if (Object.prototype.hasOwnProperty.call(obj, key)) return true;
  return false;
}

function tooLong(where: string, chars: number, max: number): string {
  return `${where} is ${chars} characters, over the limit of ${max}`;
}

function checkSingular(step: Step, value: unknown): string | undefined {
  if (step.maxChars > 0 && typeof value === "string" && value.length > step.maxChars) return tooLong(step.name, value.length, step.maxChars);
  if (step.uuid) {
    // A missing scalar reads as its zero value, as reflect's get() has it.
    const text = value === undefined ? "" : value;
    if (typeof text === "string" && !UUID.test(text)) return `${step.name} must be a UUID, got ${quote(text)}`;
  }
  const child = step.child;
  if (child !== null) {
    const violation = walk(child, step.unboxed ? { value } : (value as Fields));
    if (violation !== undefined) return step.name + child.sep + violation;
  }
  return undefined;
}

function checkList(step: Step, items: unknown[]): string | undefined {
  const max = step.maxChars;
  if (max > 0) {
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (typeof item === "string" && item.length > max) return tooLong(`${step.name}[${i}]`, item.length, max);
    }
  }
  const child = step.child;
  if (child !== null) {
    for (let i = 0; i < items.length; i++) {
      const violation = walk(child, items[i] as Fields);
      if (violation !== undefined) return `${step.name}[${i}]${child.sep}${violation}`;
    }
  }
  return undefined;
}

function checkMap(step: Step, obj: Fields): string | undefined {
  const keys = Object.keys(obj);
  const max = step.maxChars;
  if (max > 0) {
    for (const key of keys) {
      if (step.stringKeys && key.length > max) return `${step.name} has a key of ${key.length} characters, over the limit of ${max}`;
      const item = obj[key];
      if (typeof item === "string" && item.length > max) return tooLong(`${step.name}[${key}]`, item.length, max);
    }
  }
  const child = step.child;
  if (child !== null) {
    for (const key of keys) {
      const violation = walk(child, obj[key] as Fields);
      if (violation !== undefined) return `${step.name}[${key}]${child.sep}${violation}`;
    }
  }
  return undefined;
}

function checkTimestamp(msg: Fields): string | undefined {
  const { seconds, nanos } = msg as { seconds: bigint; nanos: number };
  if (seconds < MIN_SECONDS || seconds > MAX_SECONDS) return " is out of range (years 1 to 9999)";
  if (nanos < 0 || nanos > 999_999_999) return ".nanos must be 0 to 999999999";
  return undefined;
}

function checkDuration(msg: Fields): string | undefined {
  const { seconds, nanos } = msg as { seconds: bigint; nanos: number };
  // Duration's documented range is ±10,000 years; its sign must agree with nanos.
  if (seconds > 315576000000n || seconds < -315576000000n) return " is out of range";
  if (nanos > 999_999_999 || nanos < -999_999_999) return ".nanos must be within ±999999999";
  if ((seconds > 0n && nanos < 0) || (seconds < 0n && nanos > 0)) return " has seconds and nanos of different signs";
  return undefined;
}
