import { randomBytes, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { caTrustDomain, createCertificateAuthority, issueCertificate, type IssueOptions } from "./certs.js";
import { spiffeId, type RoleName } from "./spiffe.js";

/** Where certificates live when nothing says otherwise (relative to the working directory). */
export const DEFAULT_CERTS_DIR = "certs";

/** The trust domain when nothing says otherwise. */
export const DEFAULT_TRUST_DOMAIN = "baton.local";

/** Paths of a certificate and its key on disk. */
export interface CertPaths {
  certPath: string;
  keyPath: string;
}

/** Options of initCertificateAuthority. */
export interface InitCaOptions {
  /** Default DEFAULT_CERTS_DIR. */
  dir?: string;
  /** Default DEFAULT_TRUST_DOMAIN. */
  trustDomain?: string;
  /** Replace an existing CA (every certificate it issued stops being trusted). */
  force?: boolean;
}

/** Options of issueToDirectory: where, who, and the optional fields of issueCertificate. */
export type IssueToDirectoryOptions = {
  /** Default DEFAULT_CERTS_DIR; must hold ca.pem and ca.key. */
  dir?: string;
  /** Default DEFAULT_TRUST_DOMAIN. */
  trustDomain?: string;
  role: RoleName;
  name: string;
} & Partial<Pick<IssueOptions, "validDays" | "keyBits" | "dnsNames" | "ipAddresses" | "notBefore" | "notAfter">>;

/** Options of ensureDevelopmentCertificates. */
export interface DevelopmentCertificatesOptions {
  /** Default DEFAULT_CERTS_DIR. */
  dir?: string;
  /** Default DEFAULT_TRUST_DOMAIN. */
  trustDomain?: string;
  /** Default "coordinator". */
  coordinatorName?: string;
  /** Default "operator". */
  operatorName?: string;
}

/** The development PKI's files, and which of them this call made. */
export interface DevelopmentCertificates {
  caPath: string;
  coordinator: CertPaths;
  operator: CertPaths;
  /** "ca" and the names of certificates made (or remade) by this call; empty when all were there. */
  created: string[];
}

/** The contents of the three PEM files a mutual-TLS endpoint needs. */
export interface TlsFileContents {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

const caFiles = (dir: string): CertPaths => ({ certPath: join(dir, "ca.pem"), keyPath: join(dir, "ca.key") });
const leafFiles = (dir: string, name: string): CertPaths => ({ certPath: join(dir, `${name}.pem`), keyPath: join(dir, `${name}.key`) });

// Write a temporary file, then rename over the target: a reader never sees half a PEM,
// and a key file is 0600 from its first byte.
function writeAtomic(path: string, content: string, mode: number): void {
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    writeFileSync(tmp, content, { mode, flag: "wx" });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

// Key first: a certificate on disk always has its key beside it.
function writePair(paths: CertPaths, certPem: string, keyPem: string): void {
  writeAtomic(paths.keyPath, keyPem, 0o600);
  writeAtomic(paths.certPath, certPem, 0o644);
}

/** Writes a new CA as ca.pem and ca.key (0600) in `dir`; refuses to replace an existing one unless `force`. */
export async function initCertificateAuthority(options: InitCaOptions = {}): Promise<CertPaths> {
  const dir = options.dir ?? DEFAULT_CERTS_DIR;
  const paths = caFiles(dir);
  if (!options.force && (existsSync(paths.certPath) || existsSync(paths.keyPath))) {
    throw new Error(`a CA already exists in ${dir}; replacing it (force, or \`baton certs init --force\`) makes every certificate it issued untrusted`);
  }
  const ca = await createCertificateAuthority({ trustDomain: options.trustDomain ?? DEFAULT_TRUST_DOMAIN });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writePair(paths, ca.certPem, ca.keyPem);
  return paths;
}

/** Issues <name>.pem and <name>.key (0600) in `dir`, signed by the CA there; replaces an earlier certificate of that name. */
export async function issueToDirectory(options: IssueToDirectoryOptions): Promise<CertPaths> {
  const { dir = DEFAULT_CERTS_DIR, trustDomain = DEFAULT_TRUST_DOMAIN, ...issue } = options;
  // Validates the name before it becomes a file name: the alphabet has no "/".
  spiffeId(trustDomain, issue.role, issue.name);
  if (issue.name === "ca") throw new Error('"ca" names the CA\'s own files; choose another certificate name');
  const ca = caFiles(dir);
  if (!existsSync(ca.certPath) || !existsSync(ca.keyPath)) throw new Error(`no CA in ${dir} (ca.pem and ca.key): run \`baton certs init --dir ${dir}\` first`);
  const issued = await issueCertificate({ ...issue, trustDomain, ca: { certPem: readFileSync(ca.certPath, "utf8"), keyPem: readFileSync(ca.keyPath, "utf8") } });
  const paths = leafFiles(dir, issue.name);
  writePair(paths, issued.certPem, issued.keyPem);
  return paths;
}

// A leaf worth keeping: present, signed by this CA, and not expired.
function usableLeaf(paths: CertPaths, ca: X509Certificate): boolean {
  if (!existsSync(paths.certPath) || !existsSync(paths.keyPath)) return false;
  try {
    const leaf = new X509Certificate(readFileSync(paths.certPath));
    return leaf.checkIssued(ca) && leaf.verify(ca.publicKey) && new Date(leaf.validTo).getTime() > Date.now();
  } catch {
    return false;
  }
}

/**
 * Makes the development CA and the coordinator's and an operator's certificates where they
 * are missing; a certificate that has expired or was signed by another CA is remade.
 */
export async function ensureDevelopmentCertificates(options: DevelopmentCertificatesOptions = {}): Promise<DevelopmentCertificates> {
  const dir = options.dir ?? DEFAULT_CERTS_DIR;
  const trustDomain = options.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const created: string[] = [];
  const caPaths = caFiles(dir);
  const haveCert = existsSync(caPaths.certPath);
  if (haveCert !== existsSync(caPaths.keyPath)) {
    throw new Error(`${dir} holds only one of ca.pem and ca.key; restore the other or remove both`);
  }
  if (!haveCert) {
    await initCertificateAuthority({ dir, trustDomain });
    created.push("ca");
  }
  const caPem = readFileSync(caPaths.certPath, "utf8");
  const domain = caTrustDomain(caPem);
  if (domain !== undefined && domain !== trustDomain) {
    throw new Error(`the CA in ${dir} speaks for trust domain ${domain}, not ${trustDomain}; use another certificate directory`);
  }
  const ca = new X509Certificate(caPem);
  const wanted: Array<[RoleName, string]> = [
    ["coordinator", options.coordinatorName ?? "coordinator"],
    ["operator", options.operatorName ?? "operator"],
  ];
  const paths: CertPaths[] = [];
  for (const [role, name] of wanted) {
    const leaf = leafFiles(dir, name);
    paths.push(leaf);
    if (usableLeaf(leaf, ca)) continue;
    await issueToDirectory({ dir, trustDomain, role, name });
    created.push(name);
  }
  return { caPath: caPaths.certPath, coordinator: paths[0]!, operator: paths[1]!, created };
}

