import { constants, createPrivateKey, createPublicKey, generateKeyPair, privateEncrypt, randomBytes, X509Certificate, type KeyObject } from "node:crypto";
import { promisify } from "node:util";
import forge from "node-forge";
import { isValidSegment, spiffeId, type RoleName } from "./spiffe.js";
import { parseSubjectAltName } from "./subject-alt-name.js";

const generateKeyPairAsync = promisify(generateKeyPair);

/** A certificate and its private key, PEM-encoded, with its serial (lower-case hex). */
export interface IssuedPem {
  certPem: string;
  keyPem: string;
  serial: string;
}

/** Options of createCertificateAuthority. */
export interface CaOptions {
  /** The SPIFFE trust domain the CA speaks for. */
  trustDomain: string;
  /** Subject CN. Default "baton CA (<trust domain>)". */
  commonName?: string;
  /** Validity in days. Default 3650. */
  validDays?: number;
  /** RSA modulus size in bits. Default 2048. */
  keyBits?: number;
}

/** Options of issueCertificate. */
export interface IssueOptions {
  /** The issuing CA; its URI SAN must name `trustDomain`. */
  ca: { certPem: string; keyPem: string };
  trustDomain: string;
  role: RoleName;
  /** The SPIFFE name segment, also the subject CN. */
  name: string;
  /** Validity in days from now. Default 365. */
  validDays?: number;
  /** RSA modulus size in bits. Default 2048. */
  keyBits?: number;
  /** DNS SANs. Server roles (coordinator, resource_manager, performance_monitor) default to ["localhost"], others to none. */
  dnsNames?: string[];
  /** IP SANs. Server roles default to ["127.0.0.1"], others to none. */
  ipAddresses?: string[];
  /** Start of validity. Default one minute ago (tolerates small clock skew). */
  notBefore?: Date;
  /** End of validity, overriding validDays (tests make expired certificates with it). */
  notAfter?: Date;
  /** Replaces the single SPIFFE URI SAN, for tests only: [] for none, two for an ambiguous identity. */
  uriSans?: string[];
  /** Certifies this RSA private key (PEM) instead of making a new one (tests issuing many certificates). */
  keyPem?: string;
}

/** What a certificate says, for the CLI and tests. */
export interface CertificateInfo {
  /** Lower-case hex, as IssuedPem.serial. */
  serial: string;
  subjectCN: string | undefined;
  issuerCN: string | undefined;
  uris: string[];
  dnsNames: string[];
  ipAddresses: string[];
  notBefore: Date;
  notAfter: Date;
}

// Clients dial localhost, so a server's certificate must name it.
const SERVER_ROLES: ReadonlySet<RoleName> = new Set(["coordinator", "resource_manager", "performance_monitor"]);
const DAY_MS = 86_400_000;
// A certificate made this instant is valid a minute back, so a peer whose clock lags slightly accepts it.
const BACKDATE_MS = 60_000;

// Keys come from node:crypto (OpenSSL): forge's pure-JS RSA key generation takes seconds.
async function newKeyPair(bits: number): Promise<{ privateKey: KeyObject; publicKey: forge.pki.rsa.PublicKey; keyPem: string }> {
  if (!Number.isInteger(bits) || bits < 2048) throw new Error(`keyBits must be a whole number of at least 2048, not ${bits}`);
  const { publicKey, privateKey: keyPem } = await generateKeyPairAsync("rsa", {
    modulusLength: bits,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return { privateKey: createPrivateKey(keyPem), publicKey: forge.pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey, keyPem };
}

function existingKeyPair(keyPem: string): { publicKey: forge.pki.rsa.PublicKey; keyPem: string } {
  const spki = createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "pem" }).toString();
  return { publicKey: forge.pki.publicKeyFromPem(spki) as forge.pki.rsa.PublicKey, keyPem };
}

// DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO = Buffer.from("3031300d060960864801650304020105000420", "hex");

// forge's cert.sign(key, md) only calls key.sign(md) with the digested TBSCertificate, so
// OpenSSL can do the RSA operation: forge's pure-JS one takes ~70 ms, blocks the event
// loop, and would need the private key in a JS object.
function opensslSigner(key: KeyObject): forge.pki.rsa.PrivateKey {
  if (key.asymmetricKeyType !== "rsa") throw new Error(`the signing key must be RSA, not ${key.asymmetricKeyType}`);
  const signer = {
    sign(md: forge.md.MessageDigest): string {
      if (md.algorithm !== "sha256") throw new Error(`only SHA-256 signatures are made, not ${md.algorithm}`);
      const digestInfo = Buffer.concat([SHA256_DIGEST_INFO, Buffer.from(md.digest().getBytes(), "binary")]);
      return privateEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, digestInfo).toString("binary");
    },
  };
  return signer as unknown as forge.pki.rsa.PrivateKey;
}

// 16 random bytes; the top bit clear keeps the DER integer positive, and the next bit set
// keeps it 16 bytes long (a leading zero byte would not be minimal DER).
function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString("hex");
}

function validDaysOf(days: number | undefined, fallback: number): number {
  const value = days ?? fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`validDays must be a positive number, not ${value}`);
  return value;
}

// UTF8String, not forge's default PrintableString: PrintableString has no "_", so Go's
// crypto/x509 (buf, grpcurl, Envoy's control planes) refuses "task_executor_1" or
// "managed_agent" written in one (RFC 5280 §4.1.2.4 asks for UTF8String anyway).
function utf8Names(names: Array<[name: string, value: string]>): forge.pki.CertificateField[] {
  return names.map(([name, value]) => ({ name, value, valueTagClass: forge.asn1.Type.UTF8 as number as forge.asn1.Class }));
}

// A leaf's issuer must repeat the CA's subject byte for byte (Go matches parents by the raw
// bytes), in whatever string types that CA was made with. forge hands parsed UTF8String
// values back as raw UTF-8 bytes but encodes them again when writing, so decode them first.
function issuerNameOf(ca: forge.pki.Certificate): forge.pki.CertificateField[] {
  return ca.subject.attributes.map((attr) =>
    (attr.valueTagClass as number | undefined) === forge.asn1.Type.UTF8 && typeof attr.value === "string" ? { ...attr, value: forge.util.decodeUtf8(attr.value) } : attr,
  );
}

/** Makes a self-signed CA whose one URI SAN, spiffe://<trust-domain>, names the domain it speaks for (as SPIFFE bundles do). */
export async function createCertificateAuthority(options: CaOptions): Promise<IssuedPem> {
  if (!isValidSegment(options.trustDomain)) throw new Error(`trust domain ${JSON.stringify(options.trustDomain)} must be 1 to 128 of A-Z a-z 0-9 . _ -`);
  const validDays = validDaysOf(options.validDays, 3650);
  const { privateKey, publicKey, keyPem } = await newKeyPair(options.keyBits ?? 2048);
  const cert = forge.pki.createCertificate();
  // publicKey before setExtensions: forge derives the subjectKeyIdentifier from it there.
  cert.publicKey = publicKey;
  cert.serialNumber = newSerial();
  const now = Date.now();
  cert.validity.notBefore = new Date(now - BACKDATE_MS);
  cert.validity.notAfter = new Date(now + validDays * DAY_MS);
  const attrs = utf8Names([
    ["commonName", options.commonName ?? `baton CA (${options.trustDomain})`],
    ["organizationName", "baton"],
  ]);
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    // pathLen 0: this CA signs leaves only, never another CA.
    { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
    { name: "subjectAltName", altNames: [{ type: 6, value: `spiffe://${options.trustDomain}` }] },
  ]);
  cert.sign(opensslSigner(privateKey), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem, serial: cert.serialNumber };
}

/** The trust domain a CA certificate speaks for (its spiffe://<trust-domain> URI SAN), if it names one. */
export function caTrustDomain(certPem: string): string | undefined {
  for (const uri of readCertificateInfo(certPem).uris) {
    const m = /^spiffe:\/\/([^/]+)$/.exec(uri);
    if (m) return m[1];
  }
  return undefined;
}

// Parses the CA and checks it can issue for `trustDomain`, so a mismatch fails here and
// not later as a refused handshake.
function loadIssuer(ca: IssueOptions["ca"], trustDomain: string): { name: forge.pki.CertificateField[]; key: KeyObject; keyId: string } {
  const x509 = new X509Certificate(ca.certPem);
  const key = createPrivateKey(ca.keyPem);
  if (!x509.ca) throw new Error("the issuing certificate is not a CA");
  if (!x509.checkPrivateKey(key)) throw new Error("the CA key does not belong to the CA certificate");
  const cert = forge.pki.certificateFromPem(ca.certPem);
  const domain = caTrustDomain(ca.certPem);
  if (domain !== undefined && domain !== trustDomain) throw new Error(`the CA speaks for trust domain ${domain}, not ${trustDomain}`);
  // The authorityKeyIdentifier must repeat the CA's own subjectKeyIdentifier, whatever method made it.
  const ski = cert.getExtension("subjectKeyIdentifier") as { subjectKeyIdentifier?: string } | undefined;
  const keyId = ski?.subjectKeyIdentifier ? forge.util.hexToBytes(ski.subjectKeyIdentifier) : cert.generateSubjectKeyIdentifier().getBytes();
  return { name: issuerNameOf(cert), key, keyId };
}

/** Issues a leaf certificate (server and client auth) whose one URI SAN is spiffe://<trust-domain>/<role>/<name>. */
export async function issueCertificate(options: IssueOptions): Promise<IssuedPem> {
  const uri = spiffeId(options.trustDomain, options.role, options.name);
  const issuer = loadIssuer(options.ca, options.trustDomain);
  const now = Date.now();
  const notBefore = options.notBefore ?? new Date(now - BACKDATE_MS);
  const notAfter = options.notAfter ?? new Date(now + validDaysOf(options.validDays, 365) * DAY_MS);
  if (notAfter.getTime() <= notBefore.getTime()) throw new Error(`notAfter (${notAfter.toISOString()}) must be after notBefore (${notBefore.toISOString()})`);
  const { publicKey, keyPem } = options.keyPem ? existingKeyPair(options.keyPem) : await newKeyPair(options.keyBits ?? 2048);
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = newSerial();
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject(utf8Names([
    ["commonName", options.name],
    ["organizationName", "baton"],
    ["organizationalUnitName", options.role],
  ]));
  cert.setIssuer(issuer.name);
  const server = SERVER_ROLES.has(options.role);
  const altNames = [
    ...(options.uriSans ?? [uri]).map((value) => ({ type: 6, value })),
    ...(options.dnsNames ?? (server ? ["localhost"] : [])).map((value) => ({ type: 2, value })),
    ...(options.ipAddresses ?? (server ? ["127.0.0.1"] : [])).map((ip) => ({ type: 7, ip })),
  ];
  const extensions: object[] = [
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true, clientAuth: true },
    { name: "subjectKeyIdentifier" },
    { name: "authorityKeyIdentifier", keyIdentifier: issuer.keyId },
  ];
  // An empty SAN extension is invalid DER (RFC 5280 §4.2.1.6), so "no SANs" means no extension.
  if (altNames.length > 0) extensions.push({ name: "subjectAltName", altNames });
  cert.setExtensions(extensions);
  cert.sign(opensslSigner(issuer.key), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem, serial: cert.serialNumber };
}

function firstOf(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Reads a PEM certificate's serial, names and validity (with node:crypto, so any key type works). */
export function readCertificateInfo(certPem: string): CertificateInfo {
  const x = new X509Certificate(certPem);
  // The legacy object gives subject fields already unescaped, unlike x.subject's text.
  const legacy = x.toLegacyObject();
  const sans = parseSubjectAltName(x.subjectAltName ?? "") ?? [];
  const of = (type: string) => sans.filter((e) => e.type === type).map((e) => e.value);
  return {
    serial: x.serialNumber.toLowerCase(),
    subjectCN: firstOf(legacy.subject?.CN),
    issuerCN: firstOf(legacy.issuer?.CN),
    uris: of("URI"),
    dnsNames: of("DNS"),
    ipAddresses: of("IP Address"),
    notBefore: new Date(x.validFrom),
    notAfter: new Date(x.validTo),
  };
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Why a peer that trusts `ca` would refuse this certificate and key in the TLS handshake
 * (unreadable, key mismatch, not yet valid, expired, not issued by a CA in the bundle), or
 * undefined when it would not. A refused client sees only a dropped connection; this says why.
 */
export function certificateProblem(tls: { ca: string | Buffer; cert: string | Buffer; key: string | Buffer }, now: Date = new Date()): string | undefined {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(tls.cert);
  } catch (err) {
    return `the certificate is not a PEM certificate: ${(err as Error).message}`;
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(tls.key))) return "the private key does not belong to the certificate";
  } catch (err) {
    return `the private key does not load: ${(err as Error).message}`;
  }
  if (now < new Date(leaf.validFrom)) return `the certificate is not valid until ${new Date(leaf.validFrom).toISOString()}`;
  if (now > new Date(leaf.validTo)) return `the certificate expired on ${new Date(leaf.validTo).toISOString()}`;
  const cas: X509Certificate[] = [];
  for (const pem of tls.ca.toString().match(PEM_CERTIFICATE) ?? []) {
    try {
      cas.push(new X509Certificate(pem));
    } catch {
      // An unreadable entry in the bundle trusts nothing; the others may still issue the leaf.
    }
  }
  if (cas.length === 0) return "the CA bundle holds no PEM certificate";
  if (!cas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey))) {
    return `the certificate was not issued by the CA (${cas.map((ca) => readCertificateInfo(ca.toString()).subjectCN ?? ca.subject).join(", ")})`;
  }
  return undefined;
}
