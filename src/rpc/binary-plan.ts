import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { scalarZeroValue } from "@bufbuild/protobuf/reflect";
import { FeatureSet_FieldPresence, isWrapperDesc } from "@bufbuild/protobuf/wkt";
import { nestedType } from "./validate.js";

// How fast-binary.ts writes each message type: a plan per schema, made once, of how toBinary
// tells each field is set and how it writes it.

// What a step writes: a scalar or enum, a message, unpacked scalars (a tag each), packed ones, messages, a map.
export const [SCALAR, MESSAGE, LIST, PACKED, MESSAGES, MAP] = [0, 1, 2, 3, 4, 5] as const;

/** Wire type by ScalarType: 1 for 64-bit, 5 for 32-bit fixed, 2 for strings and bytes, else 0 (varint); fast-decode.ts reads by it too. */
export const WIRE: readonly number[] = [0, 1, 5, 0, 0, 0, 1, 5, 0, 2, 0, 0, 2, 0, 0, 5, 1, 0, 0];

/** How one message type is written. */
export interface Plan {
  readonly desc: DescMessage;
  /** Has a group (delimited) field: left to toBinary whole. */
  readonly delegate: boolean;
  readonly steps: Step[];
}

/** One field of a plan: how toBinary tells it is set, and how it writes it. */
export class Step {
  readonly localName: string;
  readonly oneof: string; // its localName, or ""
  /** Set when an own property other than undefined; otherwise when not zero or empty. */
  readonly explicit: boolean;
  readonly required: boolean; // LEGACY_REQUIRED: toBinary throws when it is unset
  readonly kind: number = MESSAGE;
  readonly tag: number;
  /** The scalar written (the field's, each element's or the map value's); INT32 for enums. */
  readonly scalar: ScalarType = ScalarType.INT32;
  readonly isEnum: boolean = false;
  readonly zero: unknown = undefined; // what reflect's get() reads for a missing scalar or enum
  readonly child: Plan | null = null; // the plan of the message held
  /** A Struct held as a JSON object: reflect() converts one wherever its parent is not google.protobuf.Value. */
  readonly json: boolean;
  /** A singular wrapper outside a oneof, held unboxed: its value's scalar type; else 0. */
  readonly wrapped: ScalarType | 0 = 0;
  readonly mapKey: ScalarType = ScalarType.STRING;
  readonly value: Step | null = null; // a map's message value, field 2 of the entry

  constructor(f: DescField, entryValue = false) {
    this.localName = f.localName;
    this.oneof = f.oneof?.localName ?? "";
    this.explicit = f.oneof === undefined && f.presence !== FeatureSet_FieldPresence.IMPLICIT;
    this.required = f.presence === FeatureSet_FieldPresence.LEGACY_REQUIRED;
    const message = nestedType(f);
    switch (f.fieldKind) {
      case "scalar":
        this.kind = SCALAR;
        this.scalar = f.scalar;
        this.zero = scalarZeroValue(f.scalar, false);
        break;
      case "enum":
        this.kind = SCALAR;
        this.isEnum = true;
        this.zero = f.enum.values[0]!.number;
        break;
      case "message":
        if (f.oneof === undefined && isWrapperDesc(f.message)) this.wrapped = (f.message.fields[0] as { scalar: ScalarType }).scalar;
        break;
      case "list":
        this.kind = f.listKind === "message" ? MESSAGES : f.packed ? PACKED : LIST;
        if (f.listKind === "scalar") this.scalar = f.scalar;
        break;
      case "map":
        this.kind = entryValue ? MESSAGE : MAP;
        this.mapKey = f.mapKey;
        if (f.mapKind === "scalar") this.scalar = f.scalar;
        break;
    }
    this.tag = entryValue ? 0x12 : ((f.number << 3) | (this.kind === SCALAR || this.kind === LIST ? WIRE[this.scalar]! : 2)) >>> 0;
    this.json = message?.typeName === "google.protobuf.Struct" && f.parent.typeName !== "google.protobuf.Value";
    if (message !== undefined) this.child = planOf(message);
    if (this.kind === MAP && message !== undefined) this.value = new Step(f, true);
  }
}

const plans = new WeakMap<DescMessage, Plan>();

/** The plan of a message type, made on first use. */
export function planOf(desc: DescMessage): Plan {
  let plan = plans.get(desc);
  if (plan !== undefined) return plan;
  plan = { desc, delegate: desc.fields.some((f) => (f as { delimitedEncoding?: boolean }).delimitedEncoding === true), steps: [] };
  // Cached before its steps are made, so that a recursive type (Struct, Value) finds itself.
  plans.set(desc, plan);
  // toBinary iterates sortedFields: by number, oneof members among the rest.
  for (const f of desc.fields.concat().sort((a, b) => a.number - b.number)) plan.steps.push(new Step(f));
  return plan;
}
