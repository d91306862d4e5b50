import { ROLES, initCertificateAuthority, issueToDirectory, type RoleName } from "../security/index.js";

/** Flags of `baton certs`. */
export interface CertsFlags {
  dir?: string;
  "trust-domain"?: string;
  force?: boolean;
  role?: string;
  name?: string;
  days?: string;
  dns?: string;
}

/** A usage mistake: printed with the usage text, exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** `baton certs init` and `baton certs issue`; returns the lines to print. */
export async function certs(sub: string | undefined, flags: CertsFlags, env: Record<string, string | undefined>): Promise<string[]> {
  const dir = flags.dir ?? env.BATON_CERTS_DIR ?? "certs";
  const trustDomain = flags["trust-domain"] ?? env.BATON_TRUST_DOMAIN ?? "baton.local";
  if (sub === "init") {
    const ca = await initCertificateAuthority({ dir, trustDomain, force: flags.force ?? false });
    return [`wrote ${ca.certPath} and ${ca.keyPath} (trust domain ${trustDomain})`];
  }
  if (sub === "issue") {
    const role = flags.role;
    if (!role || !(ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(", ")}`);
    if (!flags.name) throw new UsageError("--name is required");
    const days = flags.days === undefined ? undefined : Number(flags.days);
    if (days !== undefined && !(Number.isInteger(days) && days > 0)) throw new UsageError("--days must be a positive whole number");
    const issued = await issueToDirectory({
      dir,
      trustDomain,
      role: role as RoleName,
      name: flags.name,
      ...(days !== undefined ? { validDays: days } : {}),
      ...(flags.dns ? { dnsNames: flags.dns.split(",").filter(Boolean) } : {}),
    });
    return [`wrote ${issued.certPath} and ${issued.keyPath} for spiffe://${trustDomain}/${role}/${flags.name}`];
  }
  throw new UsageError(`unknown certs command ${JSON.stringify(sub ?? "")}: use init or issue`);
}
