import { generateKeyPair, randomBytes, X509Certificate } from "node:crypto";
import { promisify } from "node:util";
import forge from "node-forge";
import { spiffeId, type RoleName } from "./spiffe.js";

const generateKeyPairAsync = promisify(generateKeyPair);

/** A certificate and its private key, PEM-encoded, with its serial (hex). */
export interface IssuedPem {
  certPem: string;
  keyPem: string;
  serial: string;
}

/** Options of createCertificateAuthority. */
export interface CaOptions {
  /** The SPIFFE trust domain the CA speaks for. */
  trustDomain: string;
  /** Subject CN. Default "baton development CA (<trust domain>)". */
  commonName?: string;
  /** Default 3650. */
  validDays?: number;
  /** RSA modulus size. Default 2048. */
  keyBits?: number;
}

/** Options of issueCertificate. */
export interface IssueOptions {
  ca: { certPem: string; keyPem: string };
  trustDomain: string;
  role: RoleName;
  name: string;
  /** Default 365. */
  validDays?: number;
  /** RSA modulus size. Default 2048. */
  keyBits?: number;
  /** DNS SANs. Servers (coordinator, resource_manager, performance_monitor) default to localhost. */
  dnsNames?: string[];
  /** IP SANs. Servers default to 127.0.0.1. */
  ipAddresses?: string[];
  /** Overrides the validity start (tests make expired certificates with these). */
  notBefore?: Date;
  /** Overrides the validity end. */
  notAfter?: Date;
  /** Replaces the single SPIFFE URI SAN; tests use it to make malformed identities. */
  uriSans?: string[];
}

const SERVER_ROLES: ReadonlySet<RoleName> = new Set(["coordinator", "resource_manager", "performance_monitor"]);

// RSA keys come from node:crypto (OpenSSL): forge's pure-JS key generation takes seconds.
async function newKeyPair(bits: number): Promise<{ privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; keyPem: string }> {
  const { privateKey: keyPem } = await generateKeyPairAsync("rsa", {
    modulusLength: bits,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
  });
  const privateKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const publicKey = forge.pki.setRsaPublicKey(privateKey.n, privateKey.e);
  return { privateKey, publicKey, keyPem };
}

function newSerial(): string {
  const bytes = randomBytes(16);
  // DER integers are signed: a clear top bit keeps the serial positive.
  bytes[0] = bytes[0]! & 0x7f | 0x01;
  return bytes.toString("hex");
}

function addDays(date: Date, days: number): Date {
  return new Date(date.getTime() + days * 86_400_000);
}

/** Makes a self-signed CA whose URI SAN names its trust domain (as SPIFFE bundles do). */
export async function createCertificateAuthority(options: CaOptions): Promise<IssuedPem> {
  const { privateKey, publicKey, keyPem } = await newKeyPair(options.keyBits ?? 2048);
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = newSerial();
  const now = new Date();
  cert.validity.notBefore = new Date(now.getTime() - 60_000);
  cert.validity.notAfter = addDays(now, options.validDays ?? 3650);
  const attrs = [
    { name: "commonName", value: options.commonName ?? `baton development CA (${options.trustDomain})` },
    { name: "organizationName", value: "baton" },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: "subjectKeyIdentifier" },
    { name: "subjectAltName", altNames: [{ type: 6, value: `spiffe://${options.trustDomain}` }] },
  ]);
  cert.sign(privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem, serial: cert.serialNumber };
}

/** Issues a leaf certificate whose one URI SAN is spiffe://<trust-domain>/<role>/<name>. */
export async function issueCertificate(options: IssueOptions): Promise<IssuedPem> {
  const uri = spiffeId(options.trustDomain, options.role, options.name);
  const caCert = forge.pki.certificateFromPem(options.ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(options.ca.keyPem);
  const { publicKey, keyPem } = await newKeyPair(options.keyBits ?? 2048);
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = newSerial();
  const now = new Date();
  cert.validity.notBefore = options.notBefore ?? new Date(now.getTime() - 60_000);
  cert.validity.notAfter = options.notAfter ?? addDays(now, options.validDays ?? 365);
  cert.setSubject([
    { name: "commonName", value: options.name },
    { name: "organizationName", value: "baton" },
    { name: "organizationalUnitName", value: options.role },
  ]);
  cert.setIssuer(caCert.subject.attributes);
  const server = SERVER_ROLES.has(options.role);
  const dns = options.dnsNames ?? (server ? ["localhost"] : []);
  const ips = options.ipAddresses ?? (server ? ["127.0.0.1"] : []);
  const altNames: Array<Record<string, unknown>> = [
    ...(options.uriSans ?? [uri]).map((value) => ({ type: 6, value })),
    ...dns.map((value) => ({ type: 2, value })),
    ...ips.map((ip) => ({ type: 7, ip })),
  ];
  const extensions: Array<Record<string, unknown>> = [
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true, clientAuth: true },
    { name: "subjectKeyIdentifier" },
    { name: "authorityKeyIdentifier", keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ];
  if (altNames.length > 0) extensions.push({ name: "subjectAltName", altNames });
  cert.setExtensions(extensions);
  cert.sign(caKey as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem, serial: cert.serialNumber };
}

/** What a certificate says, for the CLI and tests (read with node:crypto). */
export interface CertificateInfo {
  serial: string;
  subject: string;
  issuer: string;
  uris: string[];
  dnsNames: string[];
  notBefore: Date;
  notAfter: Date;
}

/** Reads a PEM certificate's serial, names and validity. */
export function readCertificateInfo(certPem: string): CertificateInfo {
  const x = new X509Certificate(certPem);
  const sans = (x.subjectAltName ?? "").split(", ");
  return {
    serial: x.serialNumber.toLowerCase(),
    subject: x.subject,
    issuer: x.issuer,
    uris: sans.filter((s) => s.startsWith("URI:")).map((s) => s.slice(4)),
    dnsNames: sans.filter((s) => s.startsWith("DNS:")).map((s) => s.slice(4)),
    notBefore: new Date(x.validFrom),
    notAfter: new Date(x.validTo),
  };
}
