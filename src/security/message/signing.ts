import { createHmac, timingSafeEqual } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { SignedEnvelopeSchema, type SignedEnvelope } from "../../../gen/baton/v1/security_pb.js";
import { unauthenticated } from "../../errors.js";
import type { Keyring, MessageKey } from "./keyring.js";

/** The length of an HMAC-SHA256 signature, in bytes. */
export const SIGNATURE_BYTES = 32;

/** Signs exactly these payload bytes with HMAC-SHA256 under the keyring's current key. */
export function signEnvelope(keyring: Keyring, payload: Uint8Array): SignedEnvelope {
  return signWith(keyring.current(), payload);
}

/** Signs exactly these payload bytes under one given key (a key rotation is signed by the key the peer already has). */
export function signWith(key: MessageKey, payload: Uint8Array): SignedEnvelope {
  const signature = createHmac("sha256", key.secret).update(payload).digest();
  return create(SignedEnvelopeSchema, { keyId: key.keyId, payload, signature });
}

/**
 * The envelope's payload bytes, if its signature verifies under an accepted key;
 * UNAUTHENTICATED otherwise (unknown or retired key, wrong signature, wrong length).
 *
 * The caller decodes the payload after this returns. The signature covers the bytes as
 * sent, and is never checked against a re-serialized message: protobuf serialization is
 * not canonical (field order, unknown fields, packed or not, default values), so two
 * encoders may write the same message as different bytes.
 */
export function verifyEnvelope(keyring: Keyring, envelope: SignedEnvelope): Uint8Array {
  const key = keyring.require(envelope.keyId);
  // timingSafeEqual throws on unequal lengths; a signature of the wrong length is refused here.
  if (envelope.signature.length !== SIGNATURE_BYTES) {
    throw unauthenticated(`the signature is ${envelope.signature.length} bytes; HMAC-SHA256 signatures are ${SIGNATURE_BYTES}`);
  }
  const expected = createHmac("sha256", key.secret).update(envelope.payload).digest();
  if (!timingSafeEqual(expected, envelope.signature)) throw unauthenticated("the message signature does not verify");
  return envelope.payload;
}
