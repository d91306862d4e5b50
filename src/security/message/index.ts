export {
  DEFAULT_GRACE_MS,
  DEFAULT_ROTATION_MS,
  KEY_BYTES,
  MAX_USES_PER_KEY,
  createKeyring,
  keyringFromRotation,
  type Keyring,
  type KeyringOptions,
  type KeyringSummary,
  type MessageKey,
  type RotationListener,
} from "./keyring.js";
export { SIGNATURE_BYTES, signEnvelope, signWith, verifyEnvelope } from "./signing.js";
export { NONCE_BYTES, SEALED_DIRECTIVE_TYPE, TAG_BYTES, open, seal, type SealContext } from "./sealing.js";
export {
  ClockSkewError,
  DEFAULT_REPLAY_MAX_ENTRIES,
  DEFAULT_REPLAY_WINDOW_MS,
  TimestampWindowError,
  createReplayGuard,
  describeSkew,
  type ReplayGuard,
  type ReplayGuardOptions,
} from "./replay-guard.js";
export { openSignedBatch, type BatchHeader } from "./signed-batch.js";
