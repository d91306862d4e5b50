// Writes testdata/message-security.json: signed envelopes and sealed payloads made by baton's
// own signing and sealing code, with the keys, inputs and expected bytes, and tampered copies
// that must be refused. Run `node --import tsx test/vectors/generate.ts` to remake it (the
// nonces are random, so the sealed bytes change; the signatures do not). The TypeScript test
// (test/vectors/vectors.test.ts) and the Python SDK's tests both check the committed file.
import { writeFileSync } from "node:fs";
import { create, fromJson, toBinary, toJson, type JsonObject } from "@bufbuild/protobuf";
import { StructSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { KeyRotationSchema, SignedEnvelopeSchema, type SealedPayload } from "../../gen/baton/v1/security_pb.js";
import { AgentReportsSchema, ConnectResponseSchema, CoordinatorMessagesSchema } from "../../gen/baton/v1/session_pb.js";
import { keyringFromRotation, open, seal, SEALED_DIRECTIVE_TYPE, signWith, type Keyring } from "../../src/security/index.js";
import { ROOT } from "../helpers/process.js";

/** The keys every vector uses: k1 and k2 are accepted, k0 is retired. */
export const VECTOR_KEYS = [
  { keyId: "k1", secretHex: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" },
  { keyId: "k2", secretHex: "4242424242424242424242424242424242424242424242424242424242424242" },
];
export const RETIRED_KEY_IDS = ["k0"];

/** The receiver's keyring for the vectors, as an agent would hold it after Welcome. */
export function vectorKeyring(): Keyring {
  return keyringFromRotation(
    create(KeyRotationSchema, {
      keys: VECTOR_KEYS.map((k) => ({ keyId: k.keyId, secret: Buffer.from(k.secretHex, "hex") })),
      retiredKeyIds: RETIRED_KEY_IDS,
    }),
  );
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const flip = (b: Uint8Array, i = 0) => {
  const c = Buffer.from(b);
  c[i] = c[i]! ^ 0x01;
  return c;
};

/** The additional data sealing binds, built as docs/agents.md says (the test checks it against the real seal). */
export function additionalDataHex(keyId: string, messageId: string, sender: string, messageType: string): string {
  const parts = ["baton.v1.SealedPayload", keyId, messageId, sender, messageType].map((v) => {
    const bytes = Buffer.from(v, "utf8");
    const len = Buffer.alloc(4);
    len.writeUInt32BE(bytes.length);
    return Buffer.concat([len, bytes]);
  });
  return Buffer.concat(parts).toString("hex");
}

function main(): void {
  const keyring = vectorKeyring();
  const k1 = keyring.find("k1")!;
  const k2 = keyring.find("k2")!;
  const sentAt = timestampFromMs(Date.UTC(2026, 0, 2, 3, 4, 5, 678));

  // Signed envelopes: an AgentReports batch as an agent sends it.
  const reports = create(AgentReportsSchema, {
    messageId: "6f1c3a52-8a0e-4a57-9d3e-2b1f0c9a7e11",
    sentAt,
    sender: "task_executor_1",
    reports: [
      {
        kind: {
          case: "directiveAck",
          value: { directiveId: "0b9d7f0e-3c1a-4e8b-a6f2-5d4c3b2a1908", timestamp: sentAt, sourceAgent: "task_executor_1", attempt: 1, sequence: 7n, outcome: 1 },
        },
      },
    ],
  });
  const payload = toBinary(AgentReportsSchema, reports);
  const good = signWith(k1, payload);
  const byK2 = signWith(k2, payload);
  const signedCase = (name: string, keyId: string, p: Uint8Array, signature: Uint8Array, valid: boolean, why?: string) => ({
    name,
    key_id: keyId,
    payload_hex: hex(p),
    signature_hex: hex(signature),
    envelope_hex: hex(toBinary(SignedEnvelopeSchema, create(SignedEnvelopeSchema, { keyId, payload: p, signature }))),
    valid,
    ...(valid ? {} : { error_code: "UNAUTHENTICATED", why }),
  });
  const signed = [
    { ...signedCase("AgentReports signed with k1", "k1", payload, good.signature, true), payload_type: "baton.v1.AgentReports", payload_json: toJson(AgentReportsSchema, reports) },
    { ...signedCase("the same batch signed with k2", "k2", payload, byK2.signature, true), payload_type: "baton.v1.AgentReports" },
    { ...signedCase("empty payload signed with k1", "k1", new Uint8Array(0), signWith(k1, new Uint8Array(0)).signature, true), payload_type: "baton.v1.AgentReports" },
    signedCase("payload with one bit flipped", "k1", flip(payload, 5), good.signature, false, "the signature covers the payload bytes as sent"),
    signedCase("signature with one bit flipped", "k1", payload, flip(good.signature, 31), false, "not the HMAC of the payload"),
    signedCase("signature truncated to 16 bytes", "k1", payload, good.signature.slice(0, 16), false, "HMAC-SHA256 signatures are 32 bytes"),
    signedCase("signed with k2 but naming k1", "k1", payload, byK2.signature, false, "verified under the key its key_id names"),
    signedCase("unknown key id", "k9", payload, good.signature, false, "the key is unknown"),
    signedCase("retired key id", "k0", payload, good.signature, false, "the key is retired"),
  ];
  for (const v of signed) {
    // Each vector is checked here too, so a wrong expectation never gets written.
    let ok = true;
    try {
      const expected = signWith(keyring.require(v.key_id), Buffer.from(v.payload_hex, "hex")).signature;
      ok = hex(expected) === v.signature_hex;
    } catch {
      ok = false;
    }
    if (ok !== v.valid) throw new Error(`signed vector ${v.name}: expected valid=${v.valid}`);
  }

  // Sealed payloads: a task's sensitive_input as the coordinator seals it into a directive.
  const context = { messageId: "0b9d7f0e-3c1a-4e8b-a6f2-5d4c3b2a1908", sender: "baton-coordinator", messageType: SEALED_DIRECTIVE_TYPE };
  const secret: JsonObject = { api_token: "s3cr3t", retries: 2 };
  const plaintext = toBinary(StructSchema, fromJson(StructSchema, secret));
  const sealedK1 = seal(keyring, plaintext, context, k1);
  const sealedK2 = seal(keyring, new Uint8Array(0), context, k2);
  const sealedCase = (name: string, s: SealedPayload, ctx: typeof context, valid: boolean, extra: { plaintext_hex?: string; plaintext_json?: JsonObject; error_code?: string; why?: string } = {}) => ({
    name,
    key_id: s.keyId,
    nonce_hex: hex(s.nonce),
    ciphertext_hex: hex(s.ciphertext),
    tag_hex: hex(s.tag),
    context: { message_id: ctx.messageId, sender: ctx.sender, message_type: ctx.messageType },
    aad_hex: additionalDataHex(s.keyId, ctx.messageId, ctx.sender, ctx.messageType),
    valid,
    ...extra,
  });
  const bad = (why: string, code = "UNAUTHENTICATED") => ({ error_code: code, why });
  const sealed = [
    sealedCase("sensitive_input sealed with k1", sealedK1, context, true, { plaintext_hex: hex(plaintext), plaintext_json: secret }),
    sealedCase("empty plaintext sealed with k2", sealedK2, context, true, { plaintext_hex: "" }),
    sealedCase("ciphertext with one bit flipped", { ...sealedK1, ciphertext: flip(sealedK1.ciphertext) }, context, false, bad("the tag covers the ciphertext")),
    sealedCase("tag with one bit flipped", { ...sealedK1, tag: flip(sealedK1.tag, 15) }, context, false, bad("the tag does not verify")),
    sealedCase("tag truncated to 12 bytes", { ...sealedK1, tag: sealedK1.tag.slice(0, 12) }, context, false, bad("tags are 16 bytes; shorter ones are refused")),
    sealedCase("nonce of 11 bytes", { ...sealedK1, nonce: sealedK1.nonce.slice(0, 11) }, context, false, bad("nonces are 12 bytes", "INVALID_ARGUMENT")),
    sealedCase("opened for another directive", sealedK1, { ...context, messageId: "1b9d7f0e-3c1a-4e8b-a6f2-5d4c3b2a1908" }, false, bad("the additional data binds the directive id")),
    sealedCase("opened as from another sender", sealedK1, { ...context, sender: "other-coordinator" }, false, bad("the additional data binds the sender")),
    sealedCase("opened as another message type", sealedK1, { ...context, messageType: "baton.v1.TaskSpec" }, false, bad("the additional data binds the message type")),
    sealedCase("key id relabelled k2", { ...sealedK1, keyId: "k2" }, context, false, bad("the additional data binds the key id (and k2 is another key)")),
    sealedCase("unknown key id", { ...sealedK1, keyId: "k9" }, context, false, bad("the key is unknown")),
  ];
  for (const v of sealed) {
    let ok = true;
    try {
      const got = open(keyring, { $typeName: "baton.v1.SealedPayload", keyId: v.key_id, nonce: Buffer.from(v.nonce_hex, "hex"), ciphertext: Buffer.from(v.ciphertext_hex, "hex"), tag: Buffer.from(v.tag_hex, "hex") }, { messageId: v.context.message_id, sender: v.context.sender, messageType: v.context.message_type });
      ok = v.valid && hex(got) === v.plaintext_hex;
    } catch {
      ok = false;
    }
    if (ok !== v.valid) throw new Error(`sealed vector ${v.name}: expected valid=${v.valid}`);
  }

  // One whole frame: a signed CoordinatorMessages carrying a directive with sealed parameters, as on the wire.
  const directiveBatch = create(CoordinatorMessagesSchema, {
    messageId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    sentAt,
    sender: "baton-coordinator",
    messages: [
      {
        kind: {
          case: "directive",
          value: {
            directiveId: context.messageId,
            timestamp: sentAt,
            targetAgent: "task_executor_1",
            action: 1,
            sequence: 7n,
            attempt: 1,
            correlationId: "round-42",
            parameters: { kind: { case: "assignTask", value: { taskId: "task_123", input: { n: 3 } } }, sealed: sealedK1 },
          },
        },
      },
    ],
  });
  const frame = create(ConnectResponseSchema, { kind: { case: "signedMessages", value: signWith(k1, toBinary(CoordinatorMessagesSchema, directiveBatch)) } });
  const frames = [
    {
      name: "ConnectResponse.signed_messages: a directive whose parameters.sealed holds sensitive_input",
      type: "baton.v1.ConnectResponse",
      frame_hex: hex(toBinary(ConnectResponseSchema, frame)),
      payload_type: "baton.v1.CoordinatorMessages",
      payload_json: toJson(CoordinatorMessagesSchema, directiveBatch),
      sealed_plaintext_json: secret,
    },
  ];

  const out = {
    about:
      "baton message security test vectors, made by test/vectors/generate.ts from baton's own signing and sealing code. Signing: HMAC-SHA256(secret, payload). Sealing: AES-256-GCM, 12-byte nonce, 16-byte tag, additional data = for each of 'baton.v1.SealedPayload', key_id, message_id, sender, message_type: a 4-byte big-endian byte length then the UTF-8 bytes. See docs/agents.md.",
    keys: VECTOR_KEYS.map((k) => ({ key_id: k.keyId, secret_hex: k.secretHex })),
    retired_key_ids: RETIRED_KEY_IDS,
    signed,
    sealed,
    frames,
  };
  writeFileSync(`${ROOT}testdata/message-security.json`, `${JSON.stringify(out, null, 2)}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
