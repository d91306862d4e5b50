import { quote } from "../errors.js";

/** The header Envoy sets with the client certificate it verified. */
export const XFCC_HEADER = "x-forwarded-client-cert";

/** One element of the header: the key/value pairs of one certificate, keys lower-cased. */
export type XfccElement = Array<[key: string, value: string]>;

/** The parsed header, or why it cannot be read. */
export type XfccParse = { ok: true; elements: XfccElement[] } | { ok: false; reason: string };

const MAX_HEADER_LENGTH = 16 * 1024;

/**
 * Parses Envoy's x-forwarded-client-cert: elements split by ",", pairs by ";", each
 * `Key=value`, where a value may be double-quoted (then "," ";" "=" and `\"` may appear in it).
 */
export function parseXfcc(header: string): XfccParse {
  if (header.length > MAX_HEADER_LENGTH) return { ok: false, reason: `the ${XFCC_HEADER} header is over ${MAX_HEADER_LENGTH} characters` };
  const elements: XfccElement[] = [];
  let pairs: XfccElement = [];
  let i = 0;
  const n = header.length;
  while (i < n) {
    const eq = header.indexOf("=", i);
    if (eq < 0) return { ok: false, reason: `${XFCC_HEADER}: ${JSON.stringify(header.slice(i, i + 40))} is not Key=value` };
    const key = header.slice(i, eq).trim().toLowerCase();
    if (!/^[a-z]+$/.test(key)) return { ok: false, reason: `${XFCC_HEADER}: bad key ${quote(key)}` };
    i = eq + 1;
    let value = "";
    if (header[i] === '"') {
      i += 1;
      let closed = false;
      while (i < n) {
        const c = header[i]!;
        if (c === "\\" && i + 1 < n) {
          value += header[i + 1];
          i += 2;
        } else if (c === '"') {
          closed = true;
          i += 1;
          break;
        } else {
          value += c;
          i += 1;
        }
      }
      if (!closed) return { ok: false, reason: `${XFCC_HEADER}: unterminated quoted value of ${key}` };
    } else {
      while (i < n && header[i] !== ";" && header[i] !== ",") value += header[i++];
      value = value.trim();
    }
    pairs.push([key, value]);
    if (i < n) {
      const sep = header[i];
      if (sep !== ";" && sep !== ",") return { ok: false, reason: `${XFCC_HEADER}: expected ";" or "," after the value of ${key}` };
      i += 1;
      if (sep === ",") {
        elements.push(pairs);
        pairs = [];
      }
    }
  }
  if (pairs.length > 0) elements.push(pairs);
  if (elements.length === 0) return { ok: false, reason: `the ${XFCC_HEADER} header is empty` };
  return { ok: true, elements };
}

/**
 * The one SPIFFE URI the sidecar vouches for: the header must hold exactly one element
 * (Envoy's SANITIZE_SET, not APPEND_FORWARD) with exactly one URI.
 */
export function uriFromXfcc(header: string): { ok: true; uri: string } | { ok: false; reason: string } {
  const parsed = parseXfcc(header);
  if (!parsed.ok) return parsed;
  if (parsed.elements.length !== 1) {
    return { ok: false, reason: `${XFCC_HEADER} names ${parsed.elements.length} certificates; exactly one is accepted (configure the sidecar with SANITIZE_SET)` };
  }
  const uris = parsed.elements[0]!.filter(([k]) => k === "uri").map(([, v]) => v);
  if (uris.length !== 1) return { ok: false, reason: `${XFCC_HEADER} carries ${uris.length} URI elements; exactly one SPIFFE id is required` };
  return { ok: true, uri: uris[0]! };
}
