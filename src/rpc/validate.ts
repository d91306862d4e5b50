import { getOption, hasOption, ScalarType, type DescField, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
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

interface FieldRules {
  field: DescField;
  required: boolean;
  uuid: boolean;
  /** Most characters in each string (the field's, or each element's, key's and value's); 0 when it holds no strings. */
  maxChars: number;
}

const rulesCache = new WeakMap<DescMessage, FieldRules[]>();

function rulesOf(desc: DescMessage): FieldRules[] {
  let rules = rulesCache.get(desc);
  if (!rules) {
    rules = desc.fields.map((field) => ({
      field,
      required:
        hasOption(field, field_behavior) && getOption(field, field_behavior).includes(FieldBehavior.REQUIRED),
      uuid: hasOption(field, field_info) && getOption(field, field_info).format === FieldInfo_Format.UUID4,
      maxChars: holdsStrings(field) ? (TEXT_FIELDS.has(field.name) ? MAX_TEXT_CHARS : MAX_ID_CHARS) : 0,
    }));
    rulesCache.set(desc, rules);
  }
  return rules;
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

/** The first string of a field over `max` characters, as a violation naming where it is. */
function lengthViolation(msg: ReflectMessage, field: DescField, path: string, max: number): string | undefined {
  const over = (s: unknown): s is string => typeof s === "string" && s.length > max;
  const tooLong = (where: string, s: string) => `${where} is ${s.length} characters, over the limit of ${max}`;
  const value = msg.get(field);
  if (field.fieldKind === "scalar") return over(value) ? tooLong(path, value) : undefined;
  if (field.fieldKind === "list") {
    let i = 0;
    for (const item of value as Iterable<unknown>) {
      if (over(item)) return tooLong(`${path}[${i}]`, item);
      i++;
    }
    return undefined;
  }
  if (field.fieldKind === "map") {
    for (const [key, item] of value as Iterable<[unknown, unknown]>) {
      if (over(key)) return `${path} has a key of ${key.length} characters, over the limit of ${max}`;
      if (over(item)) return tooLong(`${path}[${String(key)}]`, item);
    }
  }
  return undefined;
}

function isPresent(msg: ReflectMessage, field: DescField): boolean {
  if (!msg.isSet(field)) return false;
  const value = msg.get(field);
  // proto3 scalars are "set" when non-zero; an empty string or zero enum is absent.
  if (field.fieldKind === "list" || field.fieldKind === "map") return (value as { size: number }).size > 0;
  return true;
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
  return walk(reflect(desc, message), "");
}

/** Throws INVALID_ARGUMENT naming the field when `message` breaks its schema's rules. */
export function assertValid<Desc extends DescMessage>(desc: Desc, message: MessageShape<Desc>): void {
  const violation = findViolation(desc, message);
  if (violation !== undefined) throw invalidArgument(`${desc.name}: ${violation}`);
}

function walk(msg: ReflectMessage, prefix: string): string | undefined {
  const typeName = msg.desc.typeName;
  if (typeName === "google.protobuf.Timestamp") return checkTimestamp(msg, prefix);
  if (typeName === "google.protobuf.Duration") return checkDuration(msg, prefix);
  if (PAYLOAD_TYPES.has(typeName)) return undefined;
  for (const { field, required, uuid, maxChars } of rulesOf(msg.desc)) {
    const path = prefix + field.name;
    if (!isPresent(msg, field)) {
      if (required) return `${path} is required`;
      continue;
    }
    if (maxChars > 0) {
      const violation = lengthViolation(msg, field, path, maxChars);
      if (violation !== undefined) return violation;
    }
    if (uuid && field.fieldKind === "scalar") {
      const value = msg.get(field);
      if (typeof value === "string" && !UUID.test(value)) return `${path} must be a UUID, got ${quote(value)}`;
    }
    const nested = nestedMessages(msg, field);
    for (const [suffix, child] of nested) {
      const violation = walk(child, `${path}${suffix}.`);
      if (violation !== undefined) return violation;
    }
  }
  return undefined;
}

function nestedMessages(msg: ReflectMessage, field: DescField): Array<[string, ReflectMessage]> {
  switch (field.fieldKind) {
    case "message":
      return [["", msg.get(field) as ReflectMessage]];
    case "list":
      if (field.listKind !== "message") return [];
      return [...(msg.get(field) as Iterable<ReflectMessage>)].map((child, i) => [`[${i}]`, child]);
    case "map":
      if (field.mapKind !== "message") return [];
      return [...(msg.get(field) as Iterable<[unknown, ReflectMessage]>)].map(([key, child]) => [`[${String(key)}]`, child]);
    default:
      return [];
  }
}

function checkTimestamp(msg: ReflectMessage, prefix: string): string | undefined {
  const { seconds, nanos } = msg.message as unknown as { seconds: bigint; nanos: number };
  const name = prefix.slice(0, -1);
  if (seconds < MIN_SECONDS || seconds > MAX_SECONDS) return `${name} is out of range (years 1 to 9999)`;
  if (nanos < 0 || nanos > 999_999_999) return `${name}.nanos must be 0 to 999999999`;
  return undefined;
}

function checkDuration(msg: ReflectMessage, prefix: string): string | undefined {
  const { seconds, nanos } = msg.message as unknown as { seconds: bigint; nanos: number };
  const name = prefix.slice(0, -1);
  // Duration's documented range is ±10,000 years; its sign must agree with nanos.
  if (seconds > 315576000000n || seconds < -315576000000n) return `${name} is out of range`;
  if (nanos > 999_999_999 || nanos < -999_999_999) return `${name}.nanos must be within ±999999999`;
  if ((seconds > 0n && nanos < 0) || (seconds < 0n && nanos > 0)) return `${name} has seconds and nanos of different signs`;
  return undefined;
}
