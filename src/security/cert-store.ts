import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeAtomic } from "./atomic-file.js";
import { caTrustDomain, createCertificateAuthority, issueCertificate, readCertificateInfo, type IssueOptions } from "./certs.js";
import { DEFAULT_REVOKED_FILE, normalizeSerial, revokeCertificate } from "./revocation.js";
import { checkSpiffeId, isValidSegment, spiffeId, type RoleName, type SpiffeIdentity } from "./spiffe.js";

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

/** Options of renewInDirectory. */
export interface RenewInDirectoryOptions {
  /** Default DEFAULT_CERTS_DIR; must hold ca.pem, ca.key and <name>.pem. */
  dir?: string;
  /** When given, the certificate's SPIFFE id must be in this trust domain; default: whatever the certificate says. */
  trustDomain?: string;
  /** The file name: renews <name>.pem and <name>.key. */
  name: string;
  /** Validity of the new certificate in days from now. Default 365. */
  validDays?: number;
  /** Add the old serial to <dir>/revoked.json once the new certificate is written. */
  revokeOld?: boolean;
}

/** What renewInDirectory did. */
export interface RenewedCertificate extends CertPaths {
  /** Normalized (normalizeSerial), as the deny list stores it. */
  oldSerial: string;
  newSerial: string;
  spiffeId: string;
}

/** Options of revokeInDirectory: the certificate <dir>/<name>.pem, or a bare serial. */
export type RevokeInDirectoryOptions = {
  /** Default DEFAULT_CERTS_DIR; the deny list is <dir>/revoked.json. */
  dir?: string;
  reason?: string;
} & ({ name: string; serial?: never } | { serial: string; name?: never });

/** What revokeInDirectory did. */
export interface RevokedInDirectory {
  /** Normalized (normalizeSerial). */
  serial: string;
  /** Known when the certificate was named. */
  spiffeId?: string;
  /** False when the serial was already revoked. */
  added: boolean;
  revokedPath: string;
}

const caFiles = (dir: string): CertPaths => ({ certPath: join(dir, "ca.pem"), keyPath: join(dir, "ca.key") });
const leafFiles = (dir: string, name: string): CertPaths => ({ certPath: join(dir, `${name}.pem`), keyPath: join(dir, `${name}.key`) });

// Key first: a certificate on disk always has its key beside it.
function writePair(paths: CertPaths, certPem: string, keyPem: string): void {
  writeAtomic(paths.keyPath, keyPem, 0o600);
  writeAtomic(paths.certPath, certPem, 0o644);
}

/** The deny list of the certificates in `dir`: <dir>/revoked.json. */
export function revokedFile(dir: string = DEFAULT_CERTS_DIR): string {
  return join(dir, DEFAULT_REVOKED_FILE);
}

// A certificate named on the command line becomes a file name: the SPIFFE alphabet has no "/".
function leafPathsOf(dir: string, name: string): CertPaths {
  if (!isValidSegment(name)) throw new Error(`certificate name ${JSON.stringify(name)} must be 1 to 128 of A-Z a-z 0-9 . _ -`);
  if (name === "ca") throw new Error('"ca" names the CA\'s own files, which are not renewed or revoked this way');
  return leafFiles(dir, name);
}

function readLeaf(certPath: string): { pem: string; x509: X509Certificate } {
  let pem: string;
  try {
    pem = readFileSync(certPath, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`no certificate ${certPath}`, { cause: err });
    throw err;
  }
  try {
    return { pem, x509: new X509Certificate(pem) };
  } catch (err) {
    throw new Error(`${certPath} is not a PEM certificate: ${(err as Error).message}`, { cause: err });
  }
}

// The one SPIFFE id a leaf must carry (as identityFromPeerCertificate insists).
function leafIdentity(certPath: string, uris: string[]): SpiffeIdentity {
  if (uris.length !== 1) throw new Error(`${certPath} has ${uris.length} URI SANs, not one SPIFFE id`);
  const checked = checkSpiffeId(uris[0]!);
  if (!checked.ok) throw new Error(`${certPath} has URI SAN ${uris[0]}, not a baton SPIFFE id: ${checked.reason}`);
  return checked.identity;
}

/**
 * Replaces <name>.key and <name>.pem in `dir` with a new key and a certificate (new serial)
 * for the same SPIFFE id, DNS and IP SANs, signed by the CA in `dir`. The old certificate may
 * have expired, but must have been issued by that CA. With `revokeOld`, the old serial is
 * added to <dir>/revoked.json after the new files are in place (never before: a service
 * would be left holding only a revoked certificate).
 */
export async function renewInDirectory(options: RenewInDirectoryOptions): Promise<RenewedCertificate> {
  const dir = options.dir ?? DEFAULT_CERTS_DIR;
  const paths = leafPathsOf(dir, options.name);
  const ca = caFiles(dir);
  if (!existsSync(ca.certPath) || !existsSync(ca.keyPath)) throw new Error(`no CA in ${dir} (ca.pem and ca.key): run \`baton certs init --dir ${dir}\` first`);
  const caPem = readFileSync(ca.certPath, "utf8");
  const old = readLeaf(paths.certPath);
  const caX509 = new X509Certificate(caPem);
  if (!old.x509.checkIssued(caX509) || !old.x509.verify(caX509.publicKey)) {
    throw new Error(`${paths.certPath} was not issued by the CA in ${dir}; issue a new certificate instead (\`baton certs issue\`)`);
  }
  const info = readCertificateInfo(old.pem);
  const identity = leafIdentity(paths.certPath, info.uris);
  if (options.trustDomain !== undefined && identity.trustDomain !== options.trustDomain) {
    throw new Error(`${paths.certPath} is for trust domain ${identity.trustDomain}, not ${options.trustDomain}`);
  }
  // Keep the key size of a stronger key; 2048 bits is the floor either way.
  const oldBits = old.x509.publicKey.asymmetricKeyDetails?.modulusLength;
  const issued = await issueCertificate({
    ca: { certPem: caPem, keyPem: readFileSync(ca.keyPath, "utf8") },
    trustDomain: identity.trustDomain,
    role: identity.role,
    name: identity.name,
    dnsNames: info.dnsNames,
    ipAddresses: info.ipAddresses,
    ...(options.validDays !== undefined ? { validDays: options.validDays } : {}),
    ...(old.x509.publicKey.asymmetricKeyType === "rsa" && oldBits !== undefined && oldBits > 2048 ? { keyBits: oldBits } : {}),
  });
  writePair(paths, issued.certPem, issued.keyPem);
  const oldSerial = normalizeSerial(info.serial);
  if (options.revokeOld) revokeCertificate(revokedFile(dir), { serial: oldSerial, spiffeId: identity.uri, reason: "superseded" });
  return { ...paths, oldSerial, newSerial: normalizeSerial(issued.serial), spiffeId: identity.uri };
}

/** Adds the serial of <dir>/<name>.pem, or a given serial, to <dir>/revoked.json (idempotent). */
export function revokeInDirectory(options: RevokeInDirectoryOptions): RevokedInDirectory {
  const dir = options.dir ?? DEFAULT_CERTS_DIR;
  const revokedPath = revokedFile(dir);
  let serial: string;
  let uri: string | undefined;
  if (options.name !== undefined) {
    const { certPath } = leafPathsOf(dir, options.name);
    const info = readCertificateInfo(readLeaf(certPath).pem);
    serial = normalizeSerial(info.serial);
    // A certificate without a proper SPIFFE id can still be revoked; it just is not named.
    const checked = info.uris.length === 1 ? checkSpiffeId(info.uris[0]!) : undefined;
    uri = checked?.ok ? checked.identity.uri : undefined;
  } else {
    serial = normalizeSerial(options.serial);
  }
  const { added } = revokeCertificate(revokedPath, {
    serial,
    ...(uri !== undefined ? { spiffeId: uri } : {}),
    ...(options.reason !== undefined ? { reason: options.reason } : {}),
  });
  return { serial, ...(uri !== undefined ? { spiffeId: uri } : {}), added, revokedPath };
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

