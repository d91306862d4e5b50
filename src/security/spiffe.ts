import { quote } from "../errors.js";

/** The protocol's roles, as the SPIFFE path names them. */
export const ROLES = ["coordinator", "managed_agent", "resource_manager", "performance_monitor", "operator"] as const;

/** One of ROLES. */
export type RoleName = (typeof ROLES)[number];

/** A parsed SPIFFE id: spiffe://<trustDomain>/<role>/<name>. */
export interface SpiffeIdentity {
  uri: string;
  trustDomain: string;
  role: RoleName;
  name: string;
}

/** A SPIFFE id checked against baton's form, or why it does not fit. */
export type SpiffeCheck = { ok: true; identity: SpiffeIdentity } | { ok: false; reason: string };

// One conservative alphabet for trust domains and names: nothing to percent-decode, no
// "/" to smuggle in a path segment or escape a certificate directory.
const SEGMENT = /^[A-Za-z0-9._-]{1,128}$/;
const SEGMENT_RULE = "1 to 128 of A-Z a-z 0-9 . _ - (and not . or ..)";

/** Whether `value` is usable as a trust domain or a name. */
export function isValidSegment(value: string): boolean {
  return SEGMENT.test(value) && value !== "." && value !== "..";
}

/** Whether `role` is one of ROLES. */
export function isRole(role: string): role is RoleName {
  return (ROLES as readonly string[]).includes(role);
}

/** The SPIFFE id of a participant; throws an Error naming the malformed part. */
export function spiffeId(trustDomain: string, role: RoleName, name: string): string {
  if (!isValidSegment(trustDomain)) throw new Error(`trust domain ${JSON.stringify(trustDomain)} must be ${SEGMENT_RULE}`);
  if (!isRole(role)) throw new Error(`role ${JSON.stringify(role)} is not one of ${ROLES.join(", ")}`);
  if (!isValidSegment(name)) throw new Error(`name ${JSON.stringify(name)} must be ${SEGMENT_RULE}`);
  return `spiffe://${trustDomain}/${role}/${name}`;
}

/** Checks spiffe://<trust-domain>/<role>/<name>, saying which part is wrong when it is. */
export function checkSpiffeId(uri: string): SpiffeCheck {
  const prefix = "spiffe://";
  if (!uri.startsWith(prefix)) return { ok: false, reason: "the scheme is not spiffe://" };
  const parts = uri.slice(prefix.length).split("/");
  if (parts.length !== 3) return { ok: false, reason: `it has ${parts.length - 1} path segments, not <role>/<name>` };
  const [trustDomain, role, name] = parts as [string, string, string];
  if (!isValidSegment(trustDomain)) return { ok: false, reason: `trust domain ${quote(trustDomain)} is not ${SEGMENT_RULE}` };
  if (!isRole(role)) return { ok: false, reason: `role ${quote(role)} is not one of ${ROLES.join(", ")}` };
  if (!isValidSegment(name)) return { ok: false, reason: `name ${quote(name)} is not ${SEGMENT_RULE}` };
  return { ok: true, identity: { uri, trustDomain, role, name } };
}

/** Parses spiffe://<trust-domain>/<role>/<name>; undefined for anything else. */
export function parseSpiffeId(uri: string): SpiffeIdentity | undefined {
  const checked = checkSpiffeId(uri);
  return checked.ok ? checked.identity : undefined;
}
