import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createCertificateAuthority, issueCertificate, type IssueOptions } from "./certs.js";
import type { RoleName } from "./spiffe.js";

/** Paths of a certificate and its key on disk. */
export interface CertPaths {
  certPath: string;
  keyPath: string;
}

// Write to a temporary name, then rename: a reader never sees half a PEM.
function writeAtomic(path: string, content: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode });
  renameSync(tmp, path);
}

/** Writes ca.pem and ca.key (0600) into `dir`; refuses to replace an existing CA unless `force`. */
export async function initCertificateAuthority(options: { dir: string; trustDomain: string; force?: boolean }): Promise<CertPaths> {
  const certPath = join(options.dir, "ca.pem");
  const keyPath = join(options.dir, "ca.key");
  if (!options.force && (existsSync(certPath) || existsSync(keyPath))) {
    throw new Error(`a CA already exists in ${options.dir}; pass --force to replace it (every certificate it issued stops working)`);
  }
  mkdirSync(options.dir, { recursive: true, mode: 0o700 });
  const ca = await createCertificateAuthority({ trustDomain: options.trustDomain });
  writeAtomic(keyPath, ca.keyPem, 0o600);
  writeAtomic(certPath, ca.certPem, 0o644);
  return { certPath, keyPath };
}

/** Issues <name>.pem and <name>.key (0600) in `dir`, signed by the CA in `dir`. */
export async function issueToDirectory(options: { dir: string; trustDomain: string; role: RoleName; name: string } & Partial<Pick<IssueOptions, "validDays" | "dnsNames" | "ipAddresses">>): Promise<CertPaths> {
  const caCert = join(options.dir, "ca.pem");
  const caKey = join(options.dir, "ca.key");
  if (!existsSync(caCert) || !existsSync(caKey)) throw new Error(`no CA in ${options.dir}: run \`baton certs init --dir ${options.dir}\` first`);
  const { dir, ...rest } = options;
  const issued = await issueCertificate({ ...rest, ca: { certPem: readFileSync(caCert, "utf8"), keyPem: readFileSync(caKey, "utf8") } });
  const certPath = join(dir, `${options.name}.pem`);
  const keyPath = join(dir, `${options.name}.key`);
  writeAtomic(keyPath, issued.keyPem, 0o600);
  writeAtomic(certPath, issued.certPem, 0o644);
  return { certPath, keyPath };
}

/** Makes the development CA, the coordinator's and an operator's certificates, only where missing. */
export async function ensureDevelopmentCertificates(options: { dir: string; trustDomain: string; coordinatorName?: string; operatorName?: string }): Promise<{ created: string[] }> {
  const created: string[] = [];
  const { dir, trustDomain } = options;
  if (!existsSync(join(dir, "ca.pem"))) {
    await initCertificateAuthority({ dir, trustDomain });
    created.push("ca");
  }
  const wanted: Array<[RoleName, string]> = [
    ["coordinator", options.coordinatorName ?? "coordinator"],
    ["operator", options.operatorName ?? "operator"],
  ];
  for (const [role, name] of wanted) {
    if (existsSync(join(dir, `${name}.pem`)) && existsSync(join(dir, `${name}.key`))) continue;
    await issueToDirectory({ dir, trustDomain, role, name });
    created.push(name);
  }
  return { created };
}
