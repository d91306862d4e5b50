import { clone, type DescField, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

const hasRedacted = new WeakMap<DescMessage, boolean>();

function redactedHere(field: DescField): boolean {
  return field.proto.options?.debugRedact === true;
}

function childMessage(field: DescField): DescMessage | undefined {
  if (field.fieldKind === "message") return field.message;
  if (field.fieldKind === "list" && field.listKind === "message") return field.message;
  if (field.fieldKind === "map" && field.mapKind === "message") return field.message;
  return undefined;
}

/** Whether a message type holds a field marked `debug_redact`, at any depth. */
export function containsRedacted(schema: DescMessage, visiting = new Set<DescMessage>()): boolean {
  const known = hasRedacted.get(schema);
  if (known !== undefined) return known;
  // A recursive type (Struct, Value) is assumed clean while it is being looked at.
  if (visiting.has(schema)) return false;
  visiting.add(schema);
  const found = schema.fields.some((f) => redactedHere(f) || (childMessage(f) !== undefined && containsRedacted(childMessage(f)!, visiting)));
  visiting.delete(schema);
  hasRedacted.set(schema, found);
  return found;
}

function clearIn(schema: DescMessage, message: Record<string, unknown>): void {
  for (const field of schema.fields) {
    const holder = field.oneof ? (message[field.oneof.localName] as { case?: string; value?: unknown }) : undefined;
    if (holder && holder.case !== field.localName) continue;
    if (redactedHere(field)) {
      if (holder) message[field.oneof!.localName] = { case: undefined };
      else message[field.localName] = field.fieldKind === "list" ? [] : field.fieldKind === "map" ? {} : undefined;
      continue;
    }
    const child = childMessage(field);
    if (!child || !containsRedacted(child)) continue;
    const value = holder ? holder.value : message[field.localName];
    if (value === undefined || value === null) continue;
    if (field.fieldKind === "list") for (const item of value as Array<Record<string, unknown>>) clearIn(child, item);
    else if (field.fieldKind === "map") for (const item of Object.values(value as Record<string, Record<string, unknown>>)) clearIn(child, item);
    else clearIn(child, value as Record<string, unknown>);
  }
}

// Whether a redacted field is set anywhere in this message: most answers hold none, and are sent without a copy.
function setIn(schema: DescMessage, message: Record<string, unknown>): boolean {
  for (const field of schema.fields) {
    const holder = field.oneof ? (message[field.oneof.localName] as { case?: string; value?: unknown }) : undefined;
    if (holder && holder.case !== field.localName) continue;
    const value = holder ? holder.value : message[field.localName];
    if (value === undefined || value === null) continue;
    if (redactedHere(field)) {
      if (field.fieldKind === "list" ? (value as unknown[]).length > 0 : field.fieldKind === "map" ? Object.keys(value as object).length > 0 : true) return true;
      continue;
    }
    const child = childMessage(field);
    if (!child || !containsRedacted(child)) continue;
    if (field.fieldKind === "list") {
      if ((value as Array<Record<string, unknown>>).some((item) => setIn(child, item))) return true;
    } else if (field.fieldKind === "map") {
      if (Object.values(value as Record<string, Record<string, unknown>>).some((item) => setIn(child, item))) return true;
    } else if (setIn(child, value as Record<string, unknown>)) return true;
  }
  return false;
}

/**
 * The message with every `debug_redact` field cleared (a copy; the original is kept).
 * Applied to every response the server sends, so a sensitive field can reach no caller.
 */
export function redact<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): MessageShape<Desc> {
  if (!containsRedacted(schema) || !setIn(schema, message as unknown as Record<string, unknown>)) return message;
  const copy = clone(schema, message);
  clearIn(schema, copy as unknown as Record<string, unknown>);
  return copy;
}
