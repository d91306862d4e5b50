import type { PeerCertificate } from "node:tls";
import { parseSpiffeId, type SpiffeIdentity } from "./spiffe.js";

/** A peer's identity, or why it has none. */
export type IdentityResult = { ok: true; identity: SpiffeIdentity } | { ok: false; reason: string };

/**
 * Splits Node's subjectaltname ("URI:spiffe://…, DNS:localhost") into entries. Node
 * quotes values that contain a comma or quote as JSON strings, so a forged SAN cannot
 * smuggle a second entry in.
 */
export function parseSubjectAltName(san: string): Array<{ type: string; value: string }> {
  const out: Array<{ type: string; value: string }> = [];
  let i = 0;
  while (i < san.length) {
    while (san[i] === " " || san[i] === ",") i++;
    if (i >= san.length) break;
    const colon = san.indexOf(":", i);
    if (colon < 0) break;
    const type = san.slice(i, colon);
    i = colon + 1;
    let value: string;
    if (san[i] === '"') {
      // JSON-quoted value: read to the matching unescaped quote.
      let j = i + 1;
      while (j < san.length && san[j] !== '"') j += san[j] === "\\" ? 2 : 1;
      value = JSON.parse(san.slice(i, j + 1)) as string;
      i = j + 1;
    } else {
      const comma = san.indexOf(", ", i);
      const end = comma < 0 ? san.length : comma;
      value = san.slice(i, end);
      i = end;
    }
    out.push({ type, value });
  }
  return out;
}

/** The SPIFFE identity in a verified peer certificate: exactly one URI SAN, in our trust domain. */
export function identityFromPeerCertificate(cert: PeerCertificate | undefined, trustDomain: string): IdentityResult {
  if (!cert || !cert.raw) return { ok: false, reason: "no client certificate" };
  const uris = parseSubjectAltName(cert.subjectaltname ?? "").filter((e) => e.type === "URI").map((e) => e.value);
  if (uris.length === 0) return { ok: false, reason: "the client certificate has no URI SAN (a SPIFFE id is required)" };
  if (uris.length > 1) return { ok: false, reason: `the client certificate has ${uris.length} URI SANs; exactly one SPIFFE id is allowed` };
  const identity = parseSpiffeId(uris[0]!);
  if (!identity) return { ok: false, reason: `${JSON.stringify(uris[0])} is not a SPIFFE id of the form spiffe://<trust-domain>/<role>/<name>` };
  if (identity.trustDomain !== trustDomain) return { ok: false, reason: `${identity.uri} is not in trust domain ${trustDomain}` };
  return { ok: true, identity };
}
