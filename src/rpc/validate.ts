import { getOption, hasOption, type DescField, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { field_behavior, FieldBehavior } from "../../gen/google/api/field_behavior_pb.js";
import { field_info, FieldInfo_Format } from "../../gen/google/api/field_info_pb.js";
import { invalidArgument } from "../errors.js";

// RFC 9562 textual form. The annotation says UUID4 (AIP-202), but any version is
// accepted so that agents may use time-ordered UUIDv7 ids.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// google.protobuf.Timestamp's documented range: 0001-01-01 to 9999-12-31.
const MIN_SECONDS = -62135596800n;
const MAX_SECONDS = 253402300799n;

interface FieldRules {
  field: DescField;
  required: boolean;
  uuid: boolean;
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
    }));
    rulesCache.set(desc, rules);
  }
  return rules;
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
 * Timestamp and Duration in range, recursively. Returns the first violation as a message
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
  for (const { field, required, uuid } of rulesOf(msg.desc)) {
    const path = prefix + field.name;
    if (!isPresent(msg, field)) {
      if (required) return `${path} is required`;
      continue;
    }
    if (uuid && field.fieldKind === "scalar") {
      const value = msg.get(field);
      if (typeof value === "string" && !UUID.test(value)) return `${path} must be a UUID, got ${JSON.stringify(value.slice(0, 64))}`;
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
