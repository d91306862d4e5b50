import { createDecipheriv } from "node:crypto";
import { readFileSync } from "node:fs";
import { fromBinary, toJson } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { SignedEnvelopeSchema } from "../../gen/baton/v1/security_pb.js";
import { AgentReportsSchema, ConnectResponseSchema, CoordinatorMessagesSchema } from "../../gen/baton/v1/session_pb.js";
import { Code, type BatonError } from "../../src/errors.js";
import { open, signWith, verifyEnvelope, type SealContext } from "../../src/security/index.js";
import { ROOT } from "../helpers/process.js";
import { vectorKeyring } from "./generate.js";

// The same file is checked by the Python SDK's tests (sdk/python/tests/test_vectors.py): the two cannot drift.
interface SignedVector { name: string; key_id: string; payload_hex: string; signature_hex: string; envelope_hex: string; valid: boolean; error_code?: string; payload_json?: unknown }
interface SealedVector { name: string; key_id: string; nonce_hex: string; ciphertext_hex: string; tag_hex: string; aad_hex: string; context: { message_id: string; sender: string; message_type: string }; valid: boolean; error_code?: string; plaintext_hex?: string; plaintext_json?: unknown }
interface FrameVector { name: string; frame_hex: string; payload_json: unknown; sealed_plaintext_json: unknown }
const vectors = JSON.parse(readFileSync(`${ROOT}testdata/message-security.json`, "utf8")) as { keys: Array<{ key_id: string; secret_hex: string }>; signed: SignedVector[]; sealed: SealedVector[]; frames: FrameVector[] };
const bytes = (h: string) => Buffer.from(h, "hex");
const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return Code[(err as BatonError).code] ?? "UNKNOWN";
  }
  return "OK";
};
const contextOf = (v: SealedVector): SealContext => ({ messageId: v.context.message_id, sender: v.context.sender, messageType: v.context.message_type });

describe("shared message security vectors (testdata/message-security.json)", () => {
  it("has valid and tampered cases of each kind", () => {
    expect(vectors.signed.filter((v) => v.valid).length).toBeGreaterThan(0);
    expect(vectors.signed.filter((v) => !v.valid).length).toBeGreaterThan(3);
    expect(vectors.sealed.filter((v) => !v.valid).length).toBeGreaterThan(5);
  });

  it.each(vectors.signed.map((v) => [v.name, v]))("signed: %s", (_name, v) => {
    const keyring = vectorKeyring();
    const envelope = fromBinary(SignedEnvelopeSchema, bytes(v.envelope_hex));
    expect(envelope.keyId).toBe(v.key_id);
    expect(Buffer.from(envelope.payload).toString("hex")).toBe(v.payload_hex);
    if (v.valid) {
      expect(Buffer.from(verifyEnvelope(keyring, envelope)).toString("hex")).toBe(v.payload_hex);
      expect(Buffer.from(signWith(keyring.require(v.key_id), bytes(v.payload_hex)).signature).toString("hex")).toBe(v.signature_hex);
      if (v.payload_json) expect(toJson(AgentReportsSchema, fromBinary(AgentReportsSchema, bytes(v.payload_hex)))).toEqual(v.payload_json);
    } else {
      expect(codeOf(() => verifyEnvelope(keyring, envelope))).toBe(v.error_code);
    }
  });

  it.each(vectors.sealed.map((v) => [v.name, v]))("sealed: %s", (_name, v) => {
    const keyring = vectorKeyring();
    const sealed = { $typeName: "baton.v1.SealedPayload" as const, keyId: v.key_id, nonce: bytes(v.nonce_hex), ciphertext: bytes(v.ciphertext_hex), tag: bytes(v.tag_hex) };
    if (v.valid) {
      expect(Buffer.from(open(keyring, sealed, contextOf(v))).toString("hex")).toBe(v.plaintext_hex);
      if (v.plaintext_json) expect(toJson(StructSchema, fromBinary(StructSchema, bytes(v.plaintext_hex!)))).toEqual(v.plaintext_json);
      // The additional data as the vector (and docs/agents.md) spell it is what the real seal bound.
      const secret = bytes(vectors.keys.find((k) => k.key_id === v.key_id)!.secret_hex);
      const decipher = createDecipheriv("aes-256-gcm", secret, sealed.nonce, { authTagLength: 16 });
      decipher.setAuthTag(sealed.tag);
      decipher.setAAD(bytes(v.aad_hex));
      expect(Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]).toString("hex")).toBe(v.plaintext_hex);
    } else {
      expect(codeOf(() => open(keyring, sealed, contextOf(v)))).toBe(v.error_code);
    }
  });

  it.each(vectors.frames.map((v) => [v.name, v]))("frame: %s", (_name, v) => {
    const keyring = vectorKeyring();
    const frame = fromBinary(ConnectResponseSchema, bytes(v.frame_hex));
    if (frame.kind.case !== "signedMessages") throw new Error("expected signed_messages");
    const batch = fromBinary(CoordinatorMessagesSchema, verifyEnvelope(keyring, frame.kind.value));
    expect(toJson(CoordinatorMessagesSchema, batch)).toEqual(v.payload_json);
    const m = batch.messages[0]!.kind;
    if (m.case !== "directive") throw new Error("expected a directive");
    const plaintext = open(keyring, m.value.parameters!.sealed!, { messageId: m.value.directiveId, sender: batch.sender, messageType: "baton.v1.CoordinationDirective" });
    expect(toJson(StructSchema, fromBinary(StructSchema, plaintext))).toEqual(v.sealed_plaintext_json);
  });
});
