import { fromJson, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { TaskSpecSchema, type TaskSpec } from "../../gen/baton/v1/control_pb.js";
import { HelloSchema, type Hello } from "../../gen/baton/v1/session_pb.js";
import { invalidArgument } from "../errors.js";
import { encodeBinary, type TransportLimits } from "../rpc/index.js";

/**
 * What the server accepts, sized so that every answer, event and directive built from it
 * fits the transport's message limit. Each is a setting under `limits` (src/config.ts).
 */
export interface PayloadLimits {
  /** Largest task spec accepted, serialized (input, sensitive_input and every other field), bytes. */
  maxTaskSpecBytes: number;
  /** Largest Hello accepted, serialized, bytes. */
  maxHelloBytes: number;
  /** Most capabilities in a Hello. */
  maxHelloCapabilities: number;
  /** Most labels in a Hello. */
  maxHelloLabels: number;
  /** Most resources in a Hello. */
  maxHelloResources: number;
}

/** The defaults: a task of 1 MiB leaves room in a 4 MiB message for its history, its result and the envelope. */
export const DEFAULT_PAYLOAD_LIMITS: PayloadLimits = {
  maxTaskSpecBytes: 1024 * 1024,
  maxHelloBytes: 16 * 1024,
  maxHelloCapabilities: 256,
  maxHelloLabels: 64,
  maxHelloResources: 256,
};

/**
 * Room kept in every message the server builds for what wraps its batch or page: the
 * frame, the signed envelope (key id, signature), the batch's id, timestamp and sender,
 * and a page's token. Generous: these take well under 1 KiB.
 */
export const ENVELOPE_RESERVE_BYTES = 64 * 1024;

/** Bytes a batch of messages or a page of results may hold so that, wrapped, it fits the transport. */
export function messageBudget(transport: Pick<TransportLimits, "maxSendMessageBytes" | "maxReceiveMessageBytes">): number {
  // What the server sends must also fit what peers accept; they are taken to use the same limits as the server.
  const limit = Math.min(transport.maxSendMessageBytes, transport.maxReceiveMessageBytes);
  return limit - Math.min(ENVELOPE_RESERVE_BYTES, limit / 2);
}

/** Bytes one element adds to a repeated message field: the element plus its tag and length prefix. */
export function elementBytes<Desc extends DescMessage>(desc: Desc, message: MessageShape<Desc>): number {
  return encodeBinary(desc, message).length + 6;
}

/**
 * How many of `items`, from the start, fit in `budgetBytes` (each sized by `bytesOf`), and
 * at most `maxCount`. The first always does: one element alone is never split or refused
 * here (the input limits make sure it fits the transport).
 */
export function countWithin<T>(items: readonly T[], bytesOf: (item: T) => number, budgetBytes: number, maxCount = Infinity): number {
  let used = 0;
  let n = 0;
  for (const item of items) {
    if (n >= maxCount) break;
    const bytes = bytesOf(item);
    if (n > 0 && used + bytes > budgetBytes) break;
    used += bytes;
    n++;
  }
  return n;
}

function structBytes(value: TaskSpec["input"]): number {
  return value ? toBinary(StructSchema, fromJson(StructSchema, value)).length : 0;
}

/** Why a task spec is too big to accept, or undefined. */
export function taskSpecSizeViolation(spec: TaskSpec, limits: Pick<PayloadLimits, "maxTaskSpecBytes">): string | undefined {
  const total = encodeBinary(TaskSpecSchema, spec).length;
  const limit = limits.maxTaskSpecBytes;
  if (total <= limit) return undefined;
  const input = structBytes(spec.input);
  const sensitive = structBytes(spec.sensitiveInput);
  // Name what makes it big: the input, the sensitive input, or the two together.
  const parts = [input > 0 ? `input ${input} bytes` : "", sensitive > 0 ? `sensitive_input ${sensitive} bytes` : ""].filter(Boolean).join(", ");
  return `the task is ${total} bytes${parts ? ` (${parts})` : ""}, over the limit of ${limit} bytes (limits.maxTaskSpecBytes, counting input, sensitive_input and every other field)`;
}

/** Why a Hello offers too much to accept, or undefined. */
export function helloSizeViolation(hello: Hello, limits: Omit<PayloadLimits, "maxTaskSpecBytes">): string | undefined {
  const counts: Array<[string, number, number, string]> = [
    ["capabilities", hello.capabilities.length, limits.maxHelloCapabilities, "limits.maxHelloCapabilities"],
    ["labels", Object.keys(hello.labels).length, limits.maxHelloLabels, "limits.maxHelloLabels"],
    ["resources", hello.resources.length, limits.maxHelloResources, "limits.maxHelloResources"],
  ];
  for (const [field, count, max, setting] of counts) {
    if (count > max) return `${field} has ${count} entries, over the limit of ${max} (${setting})`;
  }
  const bytes = encodeBinary(HelloSchema, hello).length;
  if (bytes > limits.maxHelloBytes) return `the Hello is ${bytes} bytes, over the limit of ${limits.maxHelloBytes} bytes (limits.maxHelloBytes)`;
  return undefined;
}

/** The spec's encoded size; INVALID_ARGUMENT naming the field, its size and the limit when it is too big. */
export function assertTaskSpecFits(spec: TaskSpec, limits: Pick<PayloadLimits, "maxTaskSpecBytes">): number {
  const bytes = encodeBinary(TaskSpecSchema, spec).length;
  // Encoded once: the caller counts the same bytes against the open-task bound.
  if (bytes <= limits.maxTaskSpecBytes) return bytes;
  throw invalidArgument(`TaskSpec: ${taskSpecSizeViolation(spec, limits)}`);
}

/** Throws INVALID_ARGUMENT naming the field and the limit when a Hello offers too much. */
export function assertHelloFits(hello: Hello, limits: Omit<PayloadLimits, "maxTaskSpecBytes">): void {
  const violation = helloSizeViolation(hello, limits);
  if (violation !== undefined) throw invalidArgument(`Hello: ${violation}`);
}
