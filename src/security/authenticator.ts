import { BlockList, isIP } from "node:net";
import type { PeerCertificate } from "node:tls";
import { quote } from "../errors.js";
import { identityFromPeerCertificate, identityFromUri, type IdentityResult } from "./identity.js";
import { FORWARD_CAPABILITY } from "./policy.js";
import { normalizeSerial } from "./revocation.js";
import type { SpiffeIdentity } from "./spiffe.js";
import { uriFromXfcc, XFCC_HEADER } from "./xfcc.js";

/** The header in which a coordinator forwarding a call names the caller it forwards for: its SPIFFE id. */
export const FORWARDED_IDENTITY_HEADER = "baton-forwarded-identity";
/** The forwarded caller's certificate serial (hex), checked against this server's deny list too. */
export const FORWARDED_SERIAL_HEADER = "baton-forwarded-serial";

/** What the transport says about a caller. */
export interface PeerCredentials {
  /** "host:port" as grpc-js reports it ("::ffff:127.0.0.1:5000", "[::1]:5000", "127.0.0.1:5000"). */
  address: string;
  /** The verified client certificate (mutual TLS), if any. */
  certificate: PeerCertificate | undefined;
  /** Request headers, lower-case names. */
  headers: ReadonlyMap<string, string>;
}

/** Options of createAuthenticator. */
export interface AuthenticatorOptions {
  trustDomain: string;
  /** Mesh mode: the sidecar terminated mTLS and vouches for the caller in x-forwarded-client-cert. */
  mesh?: { trustedPeers: readonly string[] } | undefined;
  /** Whether a certificate serial (lower-case hex) is revoked. */
  isRevoked?: ((serial: string) => boolean) | undefined;
  /** Whether a proven caller may name another in baton-forwarded-identity (the policy's control.forward); no one may without it. */
  mayForward?: ((by: SpiffeIdentity) => boolean) | undefined;
}

/** A caller proven by its certificate but refused what it asked: PERMISSION_DENIED, not UNAUTHENTICATED. */
export interface Denial {
  identity: SpiffeIdentity;
  /** The capability it lacks. */
  capability: string;
}

/** A caller's identity (forwardedBy names the coordinator that forwarded the call for it), or why it has none. */
export type Authentication = (IdentityResult & { ok: true; forwardedBy?: SpiffeIdentity }) | { ok: false; reason: string; denied?: Denial };

/** Resolves a caller's identity: from its certificate, or in mesh mode from a trusted sidecar's header; a coordinator may name the caller it forwards for. */
export type Authenticator = (peer: PeerCredentials) => Authentication;

/** The host part of a grpc-js peer string, IPv4-mapped IPv6 unwrapped. */
export function peerHost(address: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  // grpc-js writes `${remoteAddress}:${remotePort}` even for IPv6 ("::1:5000"), so the last ":" always starts the port.
  const cut = address.lastIndexOf(":");
  const head = cut > 0 ? address.slice(0, cut) : address;
  let host = bracketed ? bracketed[1]! : isIP(head) ? head : address;
  if (host.startsWith("::ffff:") && isIP(host.slice(7)) === 4) host = host.slice(7);
  return host;
}

/** A BlockList of addresses and CIDR ranges ("10.0.0.0/8", "::1"); throws naming a bad entry. */
export function addressList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, prefix, extra] = entry.split("/");
    const family = isIP(address ?? "");
    const bits = prefix === undefined ? undefined : Number(prefix);
    if (!family || extra !== undefined || (bits !== undefined && !(Number.isInteger(bits) && bits >= 0 && bits <= (family === 4 ? 32 : 128)))) {
      throw new Error(`${JSON.stringify(entry)} is not an IP address or CIDR range`);
    }
    const type = family === 4 ? "ipv4" : "ipv6";
    if (bits === undefined) list.addAddress(address!, type);
    else list.addSubnet(address!, bits, type);
  }
  return list;
}

/** Builds the one function that says who a caller is; every refusal carries its reason. */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { trustDomain, isRevoked } = options;
  const mayForward = options.mayForward ?? (() => false);
  const trusted = options.mesh ? addressList(options.mesh.trustedPeers) : undefined;
  // A connection's certificate is one object for all its calls (connection-guard pins it),
  // so what it proves is read once per connection, not per call.
  const byCertificate = new WeakMap<PeerCertificate, IdentityResult>();
  const fromCertificate = (cert: PeerCertificate | undefined): IdentityResult => {
    const result = identityFromPeerCertificate(cert, trustDomain);
    if (!result.ok) return result;
    const serial = cert?.serialNumber ? normalizeSerial(cert.serialNumber) : undefined;
    return serial ? { ...result, serial } : result;
  };
  const direct = (peer: PeerCredentials): IdentityResult => {
    if (trusted) {
      const host = peerHost(peer.address);
      const family = isIP(host);
      // Anyone can write the header; only a sidecar on a trusted address may be believed.
      if (!family || !trusted.check(host, family === 4 ? "ipv4" : "ipv6")) {
        return { ok: false, reason: `peer ${host || peer.address} is not a trusted sidecar, so its ${XFCC_HEADER} header is ignored and it has no identity` };
      }
      const header = peer.headers.get(XFCC_HEADER);
      if (!header) return { ok: false, reason: `the sidecar sent no ${XFCC_HEADER} header` };
      const found = uriFromXfcc(header);
      return found.ok ? identityFromUri(found.uri, trustDomain) : found;
    }
    const cert = peer.certificate;
    let result = cert && byCertificate.get(cert);
    if (!result) {
      result = fromCertificate(cert);
      if (cert) byCertificate.set(cert, result);
    }
    // Revocation is asked on every call: a serial revoked while its connection is open is refused at its next call.
    if (result.ok && result.serial && isRevoked?.(result.serial)) return { ok: false, reason: `certificate serial ${result.serial} (${result.identity.uri}) is revoked` };
    return result;
  };
  return (peer) => {
    const result = direct(peer);
    const forwarded = peer.headers.get(FORWARDED_IDENTITY_HEADER);
    if (!result.ok || forwarded === undefined) return result;
    if (!mayForward(result.identity)) {
      const by = result.identity;
      return { ok: false, reason: `${by.uri} (role ${by.role}) lacks the capability ${FORWARD_CAPABILITY} that naming another caller in ${FORWARDED_IDENTITY_HEADER} needs`, denied: { identity: by, capability: FORWARD_CAPABILITY } };
    }
    return forwardedIdentity(result.identity, forwarded, peer.headers.get(FORWARDED_SERIAL_HEADER), trustDomain, isRevoked);
  };
}

/**
 * The caller a coordinator forwards for. Only a caller of this trust domain whose role holds
 * control.forward (checked before) is believed: anyone else could name whoever it liked. The
 * caller's capabilities are then checked as its own, so forwarding never widens them.
 */
function forwardedIdentity(by: SpiffeIdentity, uri: string, rawSerial: string | undefined, trustDomain: string, isRevoked: ((serial: string) => boolean) | undefined): Authentication {
  const named = identityFromUri(uri, trustDomain);
  if (!named.ok) return { ok: false, reason: `${FORWARDED_IDENTITY_HEADER} from ${by.uri}: ${named.reason}` };
  if (rawSerial === undefined) return { ...named, forwardedBy: by };
  let serial: string;
  try {
    serial = normalizeSerial(rawSerial);
  } catch {
    return { ok: false, reason: `${FORWARDED_SERIAL_HEADER} from ${by.uri} is not a hexadecimal certificate serial: ${quote(rawSerial)}` };
  }
  // The forwarder checked its own deny list; this server's may be newer.
  if (isRevoked?.(serial)) return { ok: false, reason: `certificate serial ${serial} (${named.identity.uri}, forwarded by ${by.uri}) is revoked` };
  return { ...named, serial, forwardedBy: by };
}
