import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { ConfigError } from "../config.js";
import { JournalError } from "./journal-error.js";

// Secrets at rest in the journal (a task's sensitive_input): AES-256-GCM, a random 96-bit
// nonce per record, a 16-byte tag, and additional data binding the record's context (its
// task id), the key id and the layout version, so a sealed value moved to another task,
// or read under another key, fails to open. Layout of a sealed value:
//   version (1 byte, 1) | key id (8) | nonce (12) | ciphertext | tag (16)

/** Bytes in a journal key (AES-256). */
export const JOURNAL_KEY_BYTES = 32;
const VERSION = 1;
const KEY_ID_BYTES = 8;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEAD_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES;
const AAD_LABEL = "baton.journal.sealed.v1";

// One base64 key: 32 bytes are 44 characters with one "=" of padding.
const BASE64_KEY = /^[A-Za-z0-9+/]{43}=$/;

/** Seals secrets for the journal under the first of its keys; opens what any of them sealed. */
export interface SecretBox {
  /** Where the keys come from, for messages ("store.keyFile certs/journal.key"). */
  readonly source: string;
  /** The id (16 hex digits) of the key that seals. */
  readonly currentKeyId: string;
  /** Seals plaintext, bound to `context` (say "task/t1/sensitive_input"). */
  seal(plaintext: Uint8Array, context: string): Uint8Array;
  /** The plaintext of a sealed value bound to `context`; a JournalError for an unknown key or a value that does not authenticate. */
  open(sealed: Uint8Array, context: string): Uint8Array;
  /** The id of the key that sealed a value. */
  keyIdOf(sealed: Uint8Array): string;
}

const keyId = (key: Uint8Array) => createHash("sha256").update("baton.journal.key-id\0").update(key).digest().subarray(0, KEY_ID_BYTES);

function additionalData(id: Uint8Array, context: string): Buffer {
  return Buffer.concat([Buffer.from(`${AAD_LABEL}\0`), Buffer.of(VERSION), id, Buffer.from(`\0${context}`)]);
}

/** Whether `text` is one journal key as written: base64 of 32 bytes. */
export function isJournalKey(text: string): boolean {
  return BASE64_KEY.test(text.trim());
}

/** The keys in a key file's text: one base64 key a line (the first seals), blank lines and # comments skipped; a ConfigError naming `source` otherwise. */
export function parseJournalKeys(text: string, source: string): Buffer[] {
  const keys: Buffer[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    // The line itself is never echoed: it is a key, or a typo of one.
    if (!BASE64_KEY.test(line)) throw new ConfigError(`${source}: line ${i + 1} is not a journal key (base64 of ${JOURNAL_KEY_BYTES} bytes: 44 characters)`);
    keys.push(Buffer.from(line, "base64"));
  });
  if (keys.length === 0) throw new ConfigError(`${source} holds no journal key`);
  return keys;
}

/** A box over `keys` (the first seals; all open), named by `source` in messages. */
export function createSecretBox(keys: Uint8Array[], source: string): SecretBox {
  if (keys.length === 0) throw new Error("a secret box needs at least one key");
  for (const k of keys) if (k.length !== JOURNAL_KEY_BYTES) throw new Error(`journal keys are ${JOURNAL_KEY_BYTES} bytes, got ${k.length}`);
  const byId = new Map(keys.map((k) => [keyId(k).toString("hex"), k] as const));
  const current = keyId(keys[0]!);
  const currentKeyId = current.toString("hex");
  return {
    source,
    currentKeyId,
    seal(plaintext, context) {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv("aes-256-gcm", keys[0]!, nonce, { authTagLength: TAG_BYTES });
      cipher.setAAD(additionalData(current, context));
      return Buffer.concat([Buffer.of(VERSION), current, nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    },
    open(sealed, context) {
      if (sealed.length < HEAD_BYTES + TAG_BYTES || sealed[0] !== VERSION) throw new JournalError(`the sealed value of ${context} is not one this baton wrote (version ${sealed[0]}, ${sealed.length} bytes)`);
      const id = this.keyIdOf(sealed);
      const key = byId.get(id);
      if (!key) throw new JournalError(`the journal's ${context} is sealed with key ${id}, which ${source} does not hold (it holds ${[...byId.keys()].join(", ")}): the wrong key, or an old one that was removed`);
      const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
      const decipher = createDecipheriv("aes-256-gcm", key, buf.subarray(1 + KEY_ID_BYTES, HEAD_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(additionalData(buf.subarray(1, 1 + KEY_ID_BYTES), context));
      decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
      const head = decipher.update(buf.subarray(HEAD_BYTES, buf.length - TAG_BYTES));
      try {
        return Buffer.concat([head, decipher.final()]);
      } catch {
        throw new JournalError(`the journal's ${context} (key ${id}) does not authenticate: it was altered or moved from another record`);
      }
    },
    keyIdOf(sealed) {
      return Buffer.from(sealed.buffer, sealed.byteOffset + 1, KEY_ID_BYTES).toString("hex");
    },
  };
}

/**
 * Makes a key file at `path` (a new random key, mode 0600) unless one is there; true when
 * it made one. Never replaces a key: the journal's secrets would no longer open.
 */
export function createJournalKeyFile(path: string): boolean {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  const fd = openSync(tmp, "wx", 0o600);
  try {
    writeSync(fd, `${randomBytes(JOURNAL_KEY_BYTES).toString("base64")}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    // link, unlike rename, fails when the name exists: an existing key is never replaced.
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
}
