import type { PeerCertificate } from "node:tls";
import { quote } from "../errors.js";
import { checkSpiffeId, type SpiffeIdentity } from "./spiffe.js";
import { parseSubjectAltName } from "./subject-alt-name.js";

/** A peer's identity, or why it has none. */
export type IdentityResult = { ok: true; identity: SpiffeIdentity; /** The certificate serial (lower-case hex), over mutual TLS. */ serial?: string } | { ok: false; reason: string };

/**
 * The SPIFFE identity in a peer certificate the TLS handshake has already verified:
 * exactly one URI SAN, a baton SPIFFE id, in `trustDomain`.
 */
export function identityFromPeerCertificate(cert: PeerCertificate | undefined, trustDomain: string): IdentityResult {
  // Without a client certificate Node hands back an empty object, not undefined.
  if (!cert || !cert.raw) return { ok: false, reason: "no client certificate" };
  const entries = parseSubjectAltName(cert.subjectaltname ?? "");
  if (!entries) return { ok: false, reason: "the client certificate's subject alternative names cannot be read" };
  const uris = entries.filter((e) => e.type === "URI").map((e) => e.value);
  if (uris.length === 0) return { ok: false, reason: "the client certificate has no URI SAN (a SPIFFE id is required)" };
  if (uris.length > 1) return { ok: false, reason: `the client certificate has ${uris.length} URI SANs; exactly one SPIFFE id is allowed` };
  return identityFromUri(uris[0]!, trustDomain);
}

/** The identity a SPIFFE URI names (from a certificate or a sidecar's header), if it is a baton id in `trustDomain`. */
export function identityFromUri(uri: string, trustDomain: string): IdentityResult {
  const checked = checkSpiffeId(uri);
  if (!checked.ok) return { ok: false, reason: `${quote(uri)} is not a SPIFFE id of the form spiffe://<trust-domain>/<role>/<name>: ${checked.reason}` };
  if (checked.identity.trustDomain !== trustDomain) return { ok: false, reason: `${uri} is not in trust domain ${trustDomain}` };
  return { ok: true, identity: checked.identity };
}
