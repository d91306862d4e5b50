import { readFileSync } from "node:fs";
import { writeAtomic } from "./atomic-file.js";

/** The deny list's file name in a certificate directory. */
export const DEFAULT_REVOKED_FILE = "revoked.json";

/** One revoked certificate, as the deny list file stores it. */
export interface RevokedEntry {
  /** Lower-case hex without leading zeros (normalizeSerial). */
  serial: string;
  spiffeId?: string;
  /** ISO 8601. */
  revokedAt: string;
  reason: string;
}

/** What revokeCertificate is told. */
export interface RevokeRequest {
  /** Any form normalizeSerial accepts. */
  serial: string;
  spiffeId?: string;
  /** Default "unspecified" (RFC 5280's CRLReason for no stated reason). */
  reason?: string;
}

const HEX = /^[0-9a-f]+$/;

/**
 * A certificate serial in one comparable form: lower-case hex, without ':' separators or
 * leading zeros. Node's PeerCertificate.serialNumber is upper-case and may keep a leading
 * 0 byte; IssuedPem.serial is lower-case. Throws an Error for anything that is not hex.
 */
export function normalizeSerial(serial: string): string {
  const hex = serial.trim().replaceAll(":", "").toLowerCase();
  if (!HEX.test(hex)) throw new Error(`serial ${JSON.stringify(serial)} is not hexadecimal`);
  return hex.replace(/^0+(?=.)/, "");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// Reads and checks the whole file; a list that cannot be read is an error, never "nothing
// revoked", so a typo in the file cannot quietly let a revoked certificate back in.
function readEntries(path: string): RevokedEntry[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new Error(`cannot read the revocation list ${path}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`the revocation list ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isRecord(doc) || !Array.isArray(doc.revoked)) {
    throw new Error(`the revocation list ${path} must be an object with a "revoked" array`);
  }
  return doc.revoked.map((raw: unknown, i): RevokedEntry => {
    const where = `the revocation list ${path}: revoked[${i}]`;
    if (!isRecord(raw)) throw new Error(`${where} is not an object`);
    if (typeof raw.serial !== "string") throw new Error(`${where}.serial must be a string`);
    let serial: string;
    try {
      serial = normalizeSerial(raw.serial);
    } catch (err) {
      throw new Error(`${where}.serial: ${(err as Error).message}`);
    }
    if (raw.spiffeId !== undefined && typeof raw.spiffeId !== "string") throw new Error(`${where}.spiffeId must be a string`);
    if (typeof raw.revokedAt !== "string" || Number.isNaN(Date.parse(raw.revokedAt))) throw new Error(`${where}.revokedAt must be an ISO time`);
    if (typeof raw.reason !== "string") throw new Error(`${where}.reason must be a string`);
    return {
      serial,
      ...(raw.spiffeId !== undefined ? { spiffeId: raw.spiffeId } : {}),
      revokedAt: raw.revokedAt,
      reason: raw.reason,
    };
  });
}

/** The revoked serials (normalized) in the deny list at `path`; a missing file is an empty list, a malformed one throws. */
export function readDenyList(path: string): Set<string> {
  return new Set(readEntries(path).map((e) => e.serial));
}

/**
 * Adds a serial to the deny list at `path`, creating the file if need be; `added` is false
 * when the serial was already there. The file is replaced atomically, but two concurrent
 * revocations of the same file may lose one (the CLI is the only writer).
 */
export function revokeCertificate(path: string, entry: RevokeRequest): { added: boolean } {
  const serial = normalizeSerial(entry.serial);
  const entries = readEntries(path);
  if (entries.some((e) => e.serial === serial)) return { added: false };
  entries.push({
    serial,
    ...(entry.spiffeId !== undefined ? { spiffeId: entry.spiffeId } : {}),
    revokedAt: new Date().toISOString(),
    reason: entry.reason ?? "unspecified",
  });
  writeAtomic(path, `${JSON.stringify({ revoked: entries }, null, 2)}\n`, 0o644);
  return { added: true };
}
