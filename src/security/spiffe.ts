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

// Trust domains and names share a conservative alphabet: no percent-encoding, no dots-only.
const SEGMENT = /^[A-Za-z0-9._-]{1,128}$/;

/** Whether `value` is usable as a trust domain or a name segment. */
export function isValidSegment(value: string): boolean {
  return SEGMENT.test(value) && value !== "." && value !== "..";
}

/** Whether `role` is one of ROLES. */
export function isRole(role: string): role is RoleName {
  return (ROLES as readonly string[]).includes(role);
}

/** The SPIFFE id of a participant; throws on a malformed part. */
export function spiffeId(trustDomain: string, role: RoleName, name: string): string {
  if (!isValidSegment(trustDomain)) throw new Error(`trust domain ${JSON.stringify(trustDomain)} must be 1 to 128 of A-Z a-z 0-9 . _ -`);
  if (!isRole(role)) throw new Error(`role ${JSON.stringify(role)} is not one of ${ROLES.join(", ")}`);
  if (!isValidSegment(name)) throw new Error(`name ${JSON.stringify(name)} must be 1 to 128 of A-Z a-z 0-9 . _ -`);
  return `spiffe://${trustDomain}/${role}/${name}`;
}

/** Parses spiffe://<trust-domain>/<role>/<name>; undefined for anything else. */
export function parseSpiffeId(uri: string): SpiffeIdentity | undefined {
  const m = /^spiffe:\/\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(uri);
  if (!m) return undefined;
  const [, trustDomain, role, name] = m as unknown as [string, string, string, string];
  if (!isValidSegment(trustDomain) || !isRole(role) || !isValidSegment(name)) return undefined;
  return { uri, trustDomain, role, name };
}
