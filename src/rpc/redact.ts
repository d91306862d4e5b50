import { clone, type DescField, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { nestedType } from "./validate.js";

type Fields = Record<string, unknown>;
type Holder = { case?: string; value?: unknown };

const SINGLE = 0;
const LIST = 1;
const MAP = 2;

/** One field worth looking at: marked `debug_redact` itself, or a way down to one. */
interface Step {
  /** The field's local name. */
  readonly name: string;
  /** Its oneof's local name, when it is a member. */
  readonly oneof: string | undefined;
  readonly container: typeof SINGLE | typeof LIST | typeof MAP;
  readonly redacted: boolean;
  /** The plan of the message type it holds, when it is not redacted itself. */
  readonly child: Plan | undefined;
}

/** The fields of one message type that are redacted or lead to one, in field order. */
interface Plan {
  readonly steps: Step[];
}

// Per message type: its plan, or null when no redacted field is anywhere below it.
// Every response the server sends passes through redact(), and most types hold none.
const plans = new WeakMap<DescMessage, Plan | null>();

function redactedHere(field: DescField): boolean {
  return field.proto.options?.debugRedact === true;
}


/** Plans every type reachable from `root` that has none yet. */
function compile(root: DescMessage): void {
  const types: DescMessage[] = [];
  const seen = new Set<DescMessage>();
  const pending = [root];
  for (let type = pending.pop(); type !== undefined; type = pending.pop()) {
    if (seen.has(type) || plans.has(type)) continue;
    seen.add(type);
    types.push(type);
    for (const field of type.fields) {
      const child = nestedType(field);
      if (child) pending.push(child);
    }
  }
  // A type leads to a redacted field when one of its own is, or one of its children leads;
  // asked again until nothing changes, so a recursive type (Struct, Value) or a cycle of
  // types is decided by what is in it, whichever of its types was asked about first.
  const leads = new Set<DescMessage>();
  const leadsTo = (type: DescMessage) => leads.has(type) || Boolean(plans.get(type));
  for (let changed = true; changed; ) {
    changed = false;
    for (const type of types) {
      if (leads.has(type)) continue;
      if (type.fields.some((f) => redactedHere(f) || (nestedType(f) !== undefined && leadsTo(nestedType(f)!)))) {
        leads.add(type);
        changed = true;
      }
    }
  }
  // Made before they are filled, so that a recursive type's steps can point at its own plan.
  for (const type of types) plans.set(type, leads.has(type) ? { steps: [] } : null);
  for (const type of types) {
    const plan = plans.get(type);
    if (!plan) continue;
    for (const field of type.fields) {
      const redacted = redactedHere(field);
      const message = nestedType(field);
      const child = redacted || !message ? undefined : (plans.get(message) ?? undefined);
      if (!redacted && !child) continue;
      const container = field.fieldKind === "list" ? LIST : field.fieldKind === "map" ? MAP : SINGLE;
      plan.steps.push({ name: field.localName, oneof: field.oneof?.localName, container, redacted, child });
    }
  }
}

function planOf(schema: DescMessage): Plan | null {
  const known = plans.get(schema);
  if (known !== undefined) return known;
  compile(schema);
  return plans.get(schema) ?? null;
}

/** Whether a message type holds a field marked `debug_redact`, at any depth. */
export function containsRedacted(schema: DescMessage): boolean {
  return planOf(schema) !== null;
}

function clearIn(plan: Plan, message: Fields): void {
  for (const step of plan.steps) {
    const holder = step.oneof !== undefined ? (message[step.oneof] as Holder | undefined) : undefined;
    if (holder && holder.case !== step.name) continue;
    if (step.redacted) {
      if (holder) message[step.oneof!] = { case: undefined };
      else message[step.name] = step.container === LIST ? [] : step.container === MAP ? {} : undefined;
      continue;
    }
    const value = holder ? holder.value : message[step.name];
    if (value === undefined || value === null) continue;
    const child = step.child!;
    if (step.container === LIST) for (const item of value as Fields[]) clearIn(child, item);
    else if (step.container === MAP) for (const item of Object.values(value as Record<string, Fields>)) clearIn(child, item);
    else clearIn(child, value as Fields);
  }
}

// Whether a redacted field is set anywhere in this message: most answers hold none, and are sent without a copy.
function setIn(plan: Plan, message: Fields): boolean {
  for (const step of plan.steps) {
    const holder = step.oneof !== undefined ? (message[step.oneof] as Holder | undefined) : undefined;
    if (holder && holder.case !== step.name) continue;
    const value = holder ? holder.value : message[step.name];
    if (value === undefined || value === null) continue;
    if (step.redacted) {
      if (step.container === LIST ? (value as unknown[]).length > 0 : step.container === MAP ? Object.keys(value as object).length > 0 : true) return true;
      continue;
    }
    const child = step.child!;
    if (step.container === LIST) {
      for (const item of value as Fields[]) if (setIn(child, item)) return true;
    } else if (step.container === MAP) {
      for (const item of Object.values(value as Record<string, Fields>)) if (setIn(child, item)) return true;
    } else if (setIn(child, value as Fields)) return true;
  }
  return false;
}

/**
 * The message with every `debug_redact` field cleared (a copy; the original is kept).
 * Applied to every response the server sends, so a sensitive field can reach no caller.
 */
export function redact<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): MessageShape<Desc> {
  const plan = planOf(schema);
  if (plan === null || !setIn(plan, message as unknown as Fields)) return message;
  const copy = clone(schema, message);
  clearIn(plan, copy as unknown as Fields);
  return copy;
}
