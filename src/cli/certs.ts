import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createJournalKeyFile } from "../store/index.js";
import { UsageError } from "./exit.js";
import { ROLES, initCertificateAuthority, issueToDirectory, normalizeSerial, renewInDirectory, revokeInDirectory, type RoleName } from "../security/index.js";

/** Flags of `baton certs`. */
export interface CertsFlags {
  dir?: string;
  "trust-domain"?: string;
  force?: boolean;
  role?: string;
  name?: string;
  days?: string;
  dns?: string;
  "revoke-old"?: boolean;
  serial?: string;
  reason?: string;
}


function parseDays(days: string | undefined): number | undefined {
  if (days === undefined) return undefined;
  const value = Number(days);
  if (!(Number.isInteger(value) && value > 0)) throw new UsageError("--days must be a positive whole number");
  return value;
}

// The journal key beside the certificates (store.keyFile's default): made when missing, never replaced.
function journalKey(dir: string): string {
  const path = join(dir, "journal.key");
  return createJournalKeyFile(path) ? `wrote ${path} (the journal key: seals sensitive_input at rest; back it up apart from the data)` : `kept ${path} (the journal key is never replaced)`;
}

/** `baton certs init`, `issue`, `renew`, `revoke` and `journal-key`; returns the lines to print. */
export async function certs(sub: string | undefined, flags: CertsFlags, env: Record<string, string | undefined>): Promise<string[]> {
  const dir = flags.dir ?? env.BATON_CERTS_DIR ?? "certs";
  const trustDomain = flags["trust-domain"] ?? env.BATON_TRUST_DOMAIN ?? "baton.local";
  if (sub === "init") {
    const ca = await initCertificateAuthority({ dir, trustDomain, force: flags.force ?? false });
    return [`wrote ${ca.certPath} and ${ca.keyPath} (trust domain ${trustDomain})`, journalKey(dir)];
  }
  if (sub === "journal-key") {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return [journalKey(dir)];
  }
  if (sub === "issue") {
    const role = flags.role;
    if (!role || !(ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(", ")}`);
    if (!flags.name) throw new UsageError("--name is required");
    const days = parseDays(flags.days);
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
  if (sub === "renew") {
    if (!flags.name) throw new UsageError("--name is required");
    const days = parseDays(flags.days);
    // Only an explicit trust domain is checked: by default the certificate keeps its own.
    const explicitDomain = flags["trust-domain"] ?? env.BATON_TRUST_DOMAIN;
    const renewed = await renewInDirectory({
      dir,
      name: flags.name,
      revokeOld: flags["revoke-old"] ?? false,
      ...(explicitDomain !== undefined ? { trustDomain: explicitDomain } : {}),
      ...(days !== undefined ? { validDays: days } : {}),
    });
    const revoked = flags["revoke-old"] ? `; revoked ${renewed.oldSerial}` : "";
    return [`renewed ${renewed.certPath} for ${renewed.spiffeId}: serial ${renewed.oldSerial} -> ${renewed.newSerial}${revoked}`];
  }
  if (sub === "revoke") {
    if ((flags.name === undefined) === (flags.serial === undefined)) throw new UsageError("give exactly one of --name or --serial");
    const reason = flags.reason !== undefined ? { reason: flags.reason } : {};
    let target: { name: string } | { serial: string };
    if (flags.name !== undefined) {
      target = { name: flags.name };
    } else {
      try {
        target = { serial: normalizeSerial(flags.serial!) };
      } catch (err) {
        throw new UsageError(`--serial: ${(err as Error).message}`);
      }
    }
    const result = revokeInDirectory({ dir, ...reason, ...target });
    const who = result.spiffeId !== undefined ? ` (${result.spiffeId})` : "";
    return [result.added ? `revoked serial ${result.serial}${who}` : `serial ${result.serial}${who} was already revoked`];
  }
  throw new UsageError(`unknown certs command ${JSON.stringify(sub ?? "")}: use init, issue, renew, revoke or journal-key`);
}
