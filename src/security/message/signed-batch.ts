import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { SignedEnvelope } from "../../../gen/baton/v1/security_pb.js";
import { invalidArgument, permissionDenied, quote } from "../../errors.js";
import type { Keyring } from "./keyring.js";
import type { ReplayGuard } from "./replay-guard.js";
import { verifyEnvelope } from "./signing.js";

/** What a signed batch (AgentReports, CoordinatorMessages) says about itself. */
export interface BatchHeader {
  messageId: string;
  sentAt?: Timestamp | undefined;
  sender: string;
}

/**
 * Opens a signed batch: the signature over the bytes as sent is checked first (so
 * unauthenticated bytes are never decoded or remembered), then the bytes are decoded, the
 * sender must be who the session says, and the message id and timestamp must pass the
 * replay guard. UNAUTHENTICATED for a bad signature, key or replay; PERMISSION_DENIED for
 * another sender; INVALID_ARGUMENT for bytes that do not decode or lack id or timestamp.
 */
export function openSignedBatch<T extends BatchHeader>(keyring: Keyring, replay: ReplayGuard, envelope: SignedEnvelope, decode: (bytes: Uint8Array) => T, expectedSender: string): T {
  const bytes = verifyEnvelope(keyring, envelope);
  const batch = decode(bytes);
  // The sender check also stops reflection: a batch one side signed never passes as the other's.
  if (batch.sender !== expectedSender) throw permissionDenied(`a signed batch from ${quote(batch.sender)} arrived on the session of ${JSON.stringify(expectedSender)}`);
  if (!batch.messageId) throw invalidArgument("a signed batch needs a message_id");
  if (!batch.sentAt) throw invalidArgument("a signed batch needs sent_at");
  replay.check(batch.messageId, timestampMs(batch.sentAt));
  return batch;
}
