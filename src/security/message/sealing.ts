import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { SealedPayloadSchema, type SealedPayload } from "../../../gen/baton/v1/security_pb.js";
import { invalidArgument, unauthenticated } from "../../errors.js";
import type { Keyring, MessageKey } from "./keyring.js";

/** The AES-GCM nonce length, in bytes (96 bits, chosen at random for every message). */
export const NONCE_BYTES = 12;
/** The AES-GCM tag length, in bytes; shorter tags are refused. */
export const TAG_BYTES = 16;

/** The message type bound into a sealed directive's additional data (DirectiveParameters.sealed). */
export const SEALED_DIRECTIVE_TYPE = "baton.v1.CoordinationDirective";

/** What a sealed payload is bound to, besides its key id: moving it to another message fails to open. */
export interface SealContext {
  messageId: string;
  sender: string;
  messageType: string;
}

// Versions the additional data, so a future layout can never be read as this one.
const AAD_LABEL = "baton.v1.SealedPayload";

/** Seals plaintext with AES-256-GCM under the keyring's current key (or `key`, one the peer already has), bound to its context. */
export function seal(keyring: Keyring, plaintext: Uint8Array, aad: SealContext, key: MessageKey = keyring.current()): SealedPayload {
  checkContext(aad);
  // Every encryption spends one of the key's 2^32 random nonces; countUse refuses past the limit.
  keyring.countUse(key.keyId);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key.secret, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData(key.keyId, aad));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return create(SealedPayloadSchema, { keyId: key.keyId, nonce, ciphertext, tag: cipher.getAuthTag() });
}

/**
 * The plaintext of a sealed payload, if it opens under an accepted key with this context.
 * INVALID_ARGUMENT for a malformed nonce; UNAUTHENTICATED for a tag that is not 16 bytes,
 * an unknown or retired key, or anything tampered with (ciphertext, tag, key id, context).
 */
export function open(keyring: Keyring, sealed: SealedPayload, aad: SealContext): Uint8Array {
  checkContext(aad);
  if (sealed.nonce.length !== NONCE_BYTES) throw invalidArgument(`the nonce is ${sealed.nonce.length} bytes; AES-GCM nonces here are ${NONCE_BYTES}`);
  // A truncated tag is a forgery aid (NIST SP 800-38D, appendix C): refuse it outright, and
  // tell the decipher the length too, since setAuthTag alone accepts 4 to 16 bytes.
  if (sealed.tag.length !== TAG_BYTES) throw unauthenticated(`the tag is ${sealed.tag.length} bytes; ${TAG_BYTES} are required`);
  const key = keyring.require(sealed.keyId);
  const decipher = createDecipheriv("aes-256-gcm", key.secret, sealed.nonce, { authTagLength: TAG_BYTES });
  decipher.setAuthTag(sealed.tag);
  decipher.setAAD(additionalData(sealed.keyId, aad));
  const head = decipher.update(sealed.ciphertext);
  try {
    // The plaintext only leaves this function once final() has checked the tag.
    return Buffer.concat([head, decipher.final()]);
  } catch {
    throw unauthenticated("the sealed payload does not authenticate (tampered, or sealed for another message)");
  }
}

function checkContext(aad: SealContext): void {
  for (const field of ["messageId", "sender", "messageType"] as const) {
    const value = aad[field];
    if (typeof value !== "string" || value.length === 0) throw invalidArgument(`the seal context needs a ${field}`);
    // A lone surrogate becomes U+FFFD in UTF-8, so two different strings would bind alike.
    if (Buffer.from(value, "utf8").toString("utf8") !== value) throw invalidArgument(`the seal context's ${field} is not well-formed Unicode`);
  }
}

/**
 * The additional authenticated data: the label, key id, message id, sender and message
 * type, each as a 4-byte big-endian byte length then its UTF-8 bytes. Length prefixes
 * keep the fields apart: ("ab", "c") and ("a", "bc") encode differently. Agents in other
 * languages must build exactly these bytes.
 */
function additionalData(keyId: string, aad: SealContext): Buffer {
  const parts: Buffer[] = [];
  for (const value of [AAD_LABEL, keyId, aad.messageId, aad.sender, aad.messageType]) {
    const bytes = Buffer.from(value, "utf8");
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    parts.push(length, bytes);
  }
  return Buffer.concat(parts);
}
