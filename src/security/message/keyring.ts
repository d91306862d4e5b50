import { createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { KeyRotationSchema, SessionKeySchema, type KeyRotation } from "../../../gen/baton/v1/security_pb.js";
import { failedPrecondition, invalidArgument, resourceExhausted, unauthenticated, unavailable } from "../../errors.js";

/** 24 h: the protocol's key rotation period. */
export const DEFAULT_ROTATION_MS = 24 * 60 * 60 * 1000;
/** 1 h: how long the previous key is still accepted after a rotation. */
export const DEFAULT_GRACE_MS = 60 * 60 * 1000;
/**
 * 2^32 - 1 encryptions a key: AES-GCM with random 96-bit nonces must not seal more than
 * 2^32 messages under one key (NIST SP 800-38D, section 8.3).
 */
export const MAX_USES_PER_KEY = 2 ** 32 - 1;
/** The length of a message key, in bytes (AES-256 and HMAC-SHA256 alike). */
export const KEY_BYTES = 32;

// Retired ids are only kept to say "retired" rather than "unknown"; both are refused.
const RETIRED_IDS_KEPT = 64;
const MAX_KEY_ID_LENGTH = 128;

/**
 * A message key. The secret is a node:crypto KeyObject, which neither JSON.stringify nor
 * util.inspect can print, and toJSON names the key by its id only.
 */
export interface MessageKey {
  readonly keyId: string;
  readonly secret: KeyObject;
  /** When it started to be used for new messages, in ms since the epoch. */
  readonly notBeforeMs: number;
  toJSON(): { keyId: string };
}

/** What a keyring holds, without secrets (its toJSON). */
export interface KeyringSummary {
  currentKeyId: string | undefined;
  keyIds: string[];
  retiredKeyIds: string[];
}

/** Told of every rotation, with the KeyRotation to push to agents (it carries secrets: never log it). */
export type RotationListener = (rotation: KeyRotation) => void;

/** Options of createKeyring and keyringFromRotation. */
export interface KeyringOptions {
  /** How long a key signs and seals new messages, in ms. Default 24 h. Ignored by a follower. */
  rotationMs?: number;
  /** How long the previous key is still accepted after a rotation, in ms. Default 1 h. Ignored by a follower. */
  graceMs?: number;
  /** Encryptions a key may do before it must be rotated. Default and maximum 2^32 - 1. */
  maxUsesPerKey?: number;
  /** The clock, in ms since the epoch. Default Date.now. */
  now?: () => number;
  /** Where a rotation listener's exception goes. Default: rethrown from a microtask (an uncaught exception). */
  onListenerError?: (err: unknown) => void;
}

/**
 * The message keys of one party: the current key signs and seals, the current and
 * previous keys (within their grace) are accepted, retired keys are refused.
 */
export interface Keyring {
  /** The key for new messages; a leader rotates first when the key is too old or used up. */
  current(): MessageKey;
  /** Rotates now (leader only): a new current key, the old one accepted for graceMs more. */
  rotate(): MessageKey;
  /** The key with this id if it is accepted now, else undefined. */
  find(keyId: string): MessageKey | undefined;
  /** The key with this id if it is accepted now; UNAUTHENTICATED (unknown or retired) otherwise. */
  require(keyId: string): MessageKey;
  /** Counts one encryption under the key; RESOURCE_EXHAUSTED when it has none left. */
  countUse(keyId: string): void;
  /** Calls listener on every rotation (and every applied KeyRotation); returns the unsubscribe. */
  onRotate(listener: RotationListener): () => void;
  /** The message that hands this keyring to an agent: accepted keys newest first, and retired ids. */
  toRotation(): KeyRotation;
  /** Replaces the keys by those a leader sent (follower only). */
  apply(rotation: KeyRotation): void;
  /** Key ids only: secrets never reach a log. */
  toJSON(): KeyringSummary;
}

interface Entry {
  key: MessageKey;
  /** After this the key is refused; undefined while it is (or may be) the current key. */
  notAfterMs: number | undefined;
  uses: number;
}

/** A leader keyring: it makes its own keys and rotates them (the coordinator's). */
export function createKeyring(options: KeyringOptions = {}): Keyring {
  return makeKeyring("leader", options);
}

/** A follower keyring fed by a leader's KeyRotation messages (an agent's); it never makes keys. */
export function keyringFromRotation(rotation: KeyRotation, options: KeyringOptions = {}): Keyring {
  const keyring = makeKeyring("follower", options);
  keyring.apply(rotation);
  return keyring;
}

function makeKeyring(role: "leader" | "follower", options: KeyringOptions): Keyring {
  const rotationMs = options.rotationMs ?? DEFAULT_ROTATION_MS;
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  const maxUses = options.maxUsesPerKey ?? MAX_USES_PER_KEY;
  const now = options.now ?? Date.now;
  const onListenerError =
    options.onListenerError ??
    ((err: unknown) =>
      queueMicrotask(() => {
        throw err;
      }));
  if (!(rotationMs > 0) || !Number.isFinite(rotationMs)) throw invalidArgument(`rotationMs must be a positive number of ms, not ${rotationMs}`);
  if (!(graceMs >= 0) || !Number.isFinite(graceMs)) throw invalidArgument(`graceMs must be a non-negative number of ms, not ${graceMs}`);
  if (!Number.isInteger(maxUses) || maxUses < 1 || maxUses > MAX_USES_PER_KEY) {
    throw invalidArgument(`maxUsesPerKey must be an integer from 1 to 2^32 - 1, not ${maxUses}`);
  }

  // Newest first: entries[0] is the current key.
  let entries: Entry[] = [];
  const retired: string[] = [];
  const listeners = new Set<RotationListener>();

  function retire(keyId: string): void {
    if (retired.includes(keyId)) return;
    retired.push(keyId);
    if (retired.length > RETIRED_IDS_KEPT) retired.shift();
  }

  function accepted(entry: Entry, t: number): boolean {
    return entry.notAfterMs === undefined || t <= entry.notAfterMs;
  }

  /** Retires expired keys; a leader also rotates a key that is too old or used up, unless told not to. */
  function tick(autoRotate = true): void {
    const t = now();
    const kept = entries.filter((e) => accepted(e, t));
    if (kept.length !== entries.length) {
      for (const e of entries) if (!accepted(e, t)) retire(e.key.keyId);
      entries = kept;
    }
    if (role === "leader" && autoRotate) {
      const head = entries[0];
      if (!head || t - head.key.notBeforeMs >= rotationMs || head.uses >= maxUses) rotateNow();
    }
  }

  function newKeyId(): string {
    for (;;) {
      const id = randomBytes(8).toString("hex");
      if (!entries.some((e) => e.key.keyId === id) && !retired.includes(id)) return id;
    }
  }

  function rotateNow(): MessageKey {
    const t = now();
    const key = messageKey(newKeyId(), createSecretKey(randomBytes(KEY_BYTES)), t);
    for (const e of entries) {
      if (e.notAfterMs === undefined || e.notAfterMs > t + graceMs) e.notAfterMs = t + graceMs;
    }
    entries = [{ key, notAfterMs: undefined, uses: 0 }, ...entries];
    notify();
    return key;
  }

  function notify(): void {
    if (listeners.size === 0) return;
    const rotation = toRotation();
    for (const listener of [...listeners]) {
      try {
        listener(rotation);
      } catch (err) {
        onListenerError(err);
      }
    }
  }

  function toRotation(): KeyRotation {
    return create(KeyRotationSchema, {
      keys: entries.map((e) =>
        create(SessionKeySchema, {
          keyId: e.key.keyId,
          secret: e.key.secret.export(),
          notBefore: timestampFromMs(e.key.notBeforeMs),
          notAfter: e.notAfterMs === undefined ? undefined : timestampFromMs(e.notAfterMs),
        }),
      ),
      retiredKeyIds: [...retired],
    });
  }

  function entryOf(keyId: string): Entry | undefined {
    return entries.find((e) => e.key.keyId === keyId);
  }

  const keyring: Keyring = {
    current() {
      tick();
      const head = entries[0];
      // Only a follower gets here without a key: every key it was sent has expired.
      if (!head) throw unavailable("no message key is valid; waiting for a key rotation");
      return head.key;
    },
    rotate() {
      if (role === "follower") throw failedPrecondition("this keyring is fed by key rotations; only the leader rotates keys");
      tick(false);
      return rotateNow();
    },
    find(keyId) {
      tick();
      return entryOf(keyId)?.key;
    },
    require(keyId) {
      tick();
      const entry = entryOf(keyId);
      if (entry) return entry.key;
      if (retired.includes(keyId)) throw unauthenticated(`message key ${quote(keyId)} is retired`);
      throw unauthenticated(`message key ${quote(keyId)} is unknown`);
    },
    countUse(keyId) {
      const entry = entryOf(keyId);
      if (!entry) throw unauthenticated(`message key ${quote(keyId)} is unknown or retired`);
      if (entry.uses >= maxUses) throw resourceExhausted(`message key ${keyId} has sealed its ${maxUses} messages; waiting for a key rotation`);
      entry.uses += 1;
    },
    onRotate(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    toRotation() {
      tick();
      return toRotation();
    },
    apply(rotation) {
      if (role === "leader") throw failedPrecondition("this keyring makes its own keys; only a follower applies key rotations");
      // A key this keyring already retired stays retired: with clocks apart, the leader may
      // still list a key whose notAfter has passed here, and that must not refuse the rest.
      const next = checkRotation(rotation, now()).filter((e) => !retired.includes(e.key.keyId));
      const ids = new Set(next.map((e) => e.key.keyId));
      for (const e of entries) if (!ids.has(e.key.keyId)) retire(e.key.keyId);
      for (const id of rotation.retiredKeyIds) retire(id);
      // Keep the encryption count of a key we already had: its nonce budget is spent.
      entries = next.map((e) => ({ ...e, uses: entryOf(e.key.keyId)?.uses ?? 0 }));
      tick();
      notify();
    },
    toJSON() {
      return { currentKeyId: entries[0]?.key.keyId, keyIds: entries.map((e) => e.key.keyId), retiredKeyIds: [...retired] };
    },
  };
  if (role === "leader") tick();
  return keyring;
}

/** Validates a KeyRotation from the wire and turns it into entries (INVALID_ARGUMENT if malformed). */
function checkRotation(rotation: KeyRotation, t: number): Entry[] {
  if (rotation.keys.length === 0) throw invalidArgument("a key rotation must carry at least one key");
  const seen = new Set<string>();
  const retiring = new Set(rotation.retiredKeyIds);
  return rotation.keys.map((k, i) => {
    if (k.keyId.length === 0 || k.keyId.length > MAX_KEY_ID_LENGTH) throw invalidArgument(`key ${i} of the rotation has a key id of ${k.keyId.length} characters`);
    if (seen.has(k.keyId)) throw invalidArgument(`key id ${quote(k.keyId)} appears twice in the rotation`);
    if (retiring.has(k.keyId)) throw invalidArgument(`key id ${quote(k.keyId)} is both valid and retired in the rotation`);
    if (k.secret.length !== KEY_BYTES) throw invalidArgument(`key ${quote(k.keyId)} has a ${k.secret.length}-byte secret; ${KEY_BYTES} bytes are required`);
    seen.add(k.keyId);
    // notBefore is informational: enforcing it would refuse a fresh key on an agent whose clock lags.
    const notBeforeMs = k.notBefore ? timestampMs(k.notBefore) : t;
    const notAfterMs = k.notAfter ? timestampMs(k.notAfter) : undefined;
    return { key: messageKey(k.keyId, createSecretKey(k.secret), notBeforeMs), notAfterMs, uses: 0 };
  });
}

function messageKey(keyId: string, secret: KeyObject, notBeforeMs: number): MessageKey {
  return Object.freeze({ keyId, secret, notBeforeMs, toJSON: () => ({ keyId }) });
}

/** A key id from the wire, quoted and cut short for an error message. */
function quote(keyId: string): string {
  return JSON.stringify(keyId.length > MAX_KEY_ID_LENGTH ? `${keyId.slice(0, MAX_KEY_ID_LENGTH)}...` : keyId);
}
