import { createPrivateKey, X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { connect, createServer, type PeerCertificate, type Server, type TLSSocket } from "node:tls";
import forge from "node-forge";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { run } from "../helpers/process.js";
import {
  caTrustDomain,
  checkSpiffeId,
  createCertificateAuthority,
  ensureDevelopmentCertificates,
  identityFromPeerCertificate,
  initCertificateAuthority,
  issueCertificate,
  issueToDirectory,
  parseSpiffeId,
  parseSubjectAltName,
  readCertificateInfo,
  spiffeId,
  type IssuedPem,
  type IssueOptions,
  type RoleName,
} from "../../src/security/index.js";

const TD = "baton.local";
const DAY = 86_400_000;
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

let ca: IssuedPem;
let otherCa: IssuedPem;
beforeAll(async () => {
  [ca, otherCa] = await Promise.all([createCertificateAuthority({ trustDomain: TD }), createCertificateAuthority({ trustDomain: "other.example" })]);
});

const issue = (role: RoleName, name: string, extra: Partial<IssueOptions> = {}) => issueCertificate({ ca, trustDomain: TD, role, name, ...extra });

describe("SPIFFE ids", () => {
  it.each([
    ["spiffe://baton.local/managed_agent/task_executor_1", { trustDomain: "baton.local", role: "managed_agent", name: "task_executor_1" }],
    ["spiffe://example.org/operator/alice", { trustDomain: "example.org", role: "operator", name: "alice" }],
    ["spiffe://baton.local/coordinator/coord-1.eu", { trustDomain: "baton.local", role: "coordinator", name: "coord-1.eu" }],
    ["spiffe://baton.local/resource_manager/rm", { trustDomain: "baton.local", role: "resource_manager", name: "rm" }],
    ["spiffe://baton.local/performance_monitor/pm", { trustDomain: "baton.local", role: "performance_monitor", name: "pm" }],
  ])("accepts %s", (uri, expected) => {
    expect(parseSpiffeId(uri)).toEqual({ uri, ...expected });
  });

  it.each([
    ["another scheme", "https://baton.local/managed_agent/a"],
    ["an upper-case scheme", "SPIFFE://baton.local/managed_agent/a"],
    ["an unknown role", "spiffe://baton.local/wizard/a"],
    ["a role in the wrong case", "spiffe://baton.local/Operator/a"],
    ["no name", "spiffe://baton.local/managed_agent"],
    ["an empty name", "spiffe://baton.local/managed_agent/"],
    ["an extra segment", "spiffe://baton.local/managed_agent/a/b"],
    ["an empty role", "spiffe://baton.local//a"],
    ["a space in the name", "spiffe://baton.local/managed_agent/a b"],
    ["a comma in the name", "spiffe://baton.local/managed_agent/a,b"],
    ["a percent-escape", "spiffe://baton.local/managed_agent/a%2Fb"],
    ["a dot-dot name", "spiffe://baton.local/managed_agent/.."],
    ["an empty trust domain", "spiffe:///managed_agent/a"],
    ["a port in the trust domain", "spiffe://baton.local:8443/managed_agent/a"],
    ["user info", "spiffe://u@baton.local/managed_agent/a"],
    ["a query", "spiffe://baton.local/managed_agent/a?x=1"],
    ["a trailing newline", "spiffe://baton.local/managed_agent/a\n"],
    ["the trust domain alone", "spiffe://baton.local"],
    ["nothing", ""],
  ])("refuses %s", (_what, uri) => {
    expect(parseSpiffeId(uri)).toBeUndefined();
    expect(checkSpiffeId(uri).ok).toBe(false);
  });

  it("says which part is wrong", () => {
    const checked = checkSpiffeId("spiffe://baton.local/wizard/a");
    expect(checked.ok).toBe(false);
    if (!checked.ok) expect(checked.reason).toContain("wizard");
  });

  it.each([
    ["a slash in the name", TD, "a/b"],
    ["an empty name", TD, ""],
    ["a bad trust domain", "baton local", "a"],
  ])("will not make an id with %s", (_what, trustDomain, name) => {
    expect(() => spiffeId(trustDomain, "managed_agent", name)).toThrow(Error);
  });
});

describe("Node's subjectaltname", () => {
  it("splits the string Node prints, JSON-quoted values included", async () => {
    const smuggled = "spiffe://baton.local/operator/a, URI:spiffe://baton.local/operator/b";
    const leaf = await issue("operator", "x", { uriSans: [smuggled, 'spiffe://baton.local/operator/q"'], dnsNames: ["ok"], ipAddresses: ["127.0.0.1", "::1"] });
    const san = new X509Certificate(leaf.certPem).subjectAltName!;
    expect(parseSubjectAltName(san)).toEqual([
      { type: "URI", value: smuggled },
      { type: "URI", value: 'spiffe://baton.local/operator/q"' },
      { type: "DNS", value: "ok" },
      { type: "IP Address", value: "127.0.0.1" },
      { type: "IP Address", value: "0:0:0:0:0:0:0:1" },
    ]);
  });

  it.each(['URI:"unterminated', "no-type", "URI:a,DNS:b", "URI:a, ", ":value"])("calls %j malformed", (san) => {
    expect(parseSubjectAltName(san)).toBeUndefined();
  });
});

describe("certificates", () => {
  it("makes a self-signed CA that names its trust domain", () => {
    const x = new X509Certificate(ca.certPem);
    expect(x.ca).toBe(true);
    expect(x.checkIssued(x)).toBe(true);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.subjectAltName).toBe("URI:spiffe://baton.local");
    expect(caTrustDomain(ca.certPem)).toBe(TD);
    expect(caTrustDomain(otherCa.certPem)).toBe("other.example");
    expect(readCertificateInfo(ca.certPem)).toMatchObject({ serial: ca.serial, subjectCN: "baton CA (baton.local)", issuerCN: "baton CA (baton.local)" });
  });

  it("issues a client leaf that chains to the CA, with one URI SAN and no DNS names", async () => {
    const leaf = await issue("managed_agent", "a1");
    const x = new X509Certificate(leaf.certPem);
    const caX = new X509Certificate(ca.certPem);
    expect(x.checkIssued(caX)).toBe(true);
    expect(x.verify(caX.publicKey)).toBe(true);
    expect(x.verify(new X509Certificate(otherCa.certPem).publicKey)).toBe(false);
    expect(x.ca).toBe(false);
    expect(x.subjectAltName).toBe("URI:spiffe://baton.local/managed_agent/a1");
    expect(x.keyUsage).toEqual(expect.arrayContaining([SERVER_AUTH, CLIENT_AUTH]));
    expect(x.checkPrivateKey(createPrivateKey(leaf.keyPem))).toBe(true);
    expect(readCertificateInfo(leaf.certPem)).toMatchObject({ serial: leaf.serial, subjectCN: "a1", issuerCN: "baton CA (baton.local)", uris: ["spiffe://baton.local/managed_agent/a1"], dnsNames: [] });
  });

  it.each(["coordinator", "resource_manager", "performance_monitor"] as const)("gives a %s certificate localhost and 127.0.0.1", async (role) => {
    const x = new X509Certificate((await issue(role, "s1")).certPem);
    expect(x.subjectAltName).toBe(`URI:spiffe://baton.local/${role}/s1, DNS:localhost, IP Address:127.0.0.1`);
    expect(x.checkHost("localhost")).toBe("localhost");
    expect(x.checkIP("127.0.0.1")).toBe("127.0.0.1");
  });

  it("uses given DNS names and IP addresses instead of the defaults", async () => {
    const info = readCertificateInfo((await issue("coordinator", "c", { dnsNames: ["baton.example"], ipAddresses: ["10.0.0.1"] })).certPem);
    expect(info).toMatchObject({ dnsNames: ["baton.example"], ipAddresses: ["10.0.0.1"] });
  });

  it("gives unique, positive 16-byte serials", async () => {
    const serials = (await Promise.all([1, 2, 3, 4].map((i) => issue("operator", `o${i}`)))).map((c) => c.serial);
    expect(new Set(serials).size).toBe(serials.length);
    for (const s of serials) {
      expect(s).toMatch(/^[0-9a-f]{32}$/);
      expect(Number.parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80);
    }
  });

  it("honours notBefore and notAfter, so a certificate can be already expired", async () => {
    const notAfter = new Date(Date.now() - DAY);
    const notBefore = new Date(notAfter.getTime() - DAY);
    const info = readCertificateInfo((await issue("operator", "old", { notBefore, notAfter })).certPem);
    // X.509 times have whole seconds.
    expect(info.notAfter.getTime()).toBe(Math.floor(notAfter.getTime() / 1000) * 1000);
    expect(info.notAfter.getTime()).toBeLessThan(Date.now());
  });

  it("issues with validDays from now", async () => {
    const info = readCertificateInfo((await issue("operator", "d", { validDays: 2 })).certPem);
    expect(Math.abs(info.notAfter.getTime() - (Date.now() + 2 * DAY))).toBeLessThan(60_000);
  });

  it("can leave the URI SAN out or put two in (for tests of refusal)", async () => {
    const two = ["spiffe://baton.local/operator/a", "spiffe://baton.local/operator/b"];
    const [none, both] = await Promise.all([issue("operator", "n", { uriSans: [] }), issue("operator", "n", { uriSans: two })]);
    expect(new X509Certificate(none.certPem).subjectAltName).toBeUndefined();
    expect(readCertificateInfo(none.certPem).uris).toEqual([]);
    expect(readCertificateInfo(both.certPem).uris).toEqual(two);
  });

  it.each<[string, Partial<IssueOptions>]>([
    ["a bad name", { name: "../ca" }],
    ["a trust domain the CA does not speak for", { trustDomain: "other.example" }],
    ["notAfter before notBefore", { notBefore: new Date(), notAfter: new Date(Date.now() - DAY) }],
    ["a non-positive validity", { validDays: 0 }],
    ["a key under 2048 bits", { keyBits: 1024 }],
    ["a bad IP address", { ipAddresses: ["not-an-ip"] }],
  ])("refuses to issue with %s", async (_what, extra) => {
    await expect(issue("operator", "x", extra)).rejects.toThrow(Error);
  });

  it("refuses a CA key that does not belong to the CA certificate", async () => {
    await expect(issueCertificate({ ca: { certPem: ca.certPem, keyPem: otherCa.keyPem }, trustDomain: TD, role: "operator", name: "x" })).rejects.toThrow(Error);
  });

  it("refuses a leaf as issuer", async () => {
    const leaf = await issue("operator", "x");
    await expect(issueCertificate({ ca: leaf, trustDomain: TD, role: "operator", name: "y" })).rejects.toThrow(Error);
  });
});

describe("identityFromPeerCertificate over real mutual TLS", () => {
  let server: IssuedPem;
  const servers: Server[] = [];
  const sockets: TLSSocket[] = [];
  beforeAll(async () => {
    server = await issue("coordinator", "coordinator");
  });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  });

  type Handshake = { ok: true; peer: PeerCertificate } | { ok: false; error: Error };

  // The server side of one real handshake: the peer certificate it saw, or why it failed.
  async function handshake(client: IssuedPem | undefined, options: { trust?: string[]; rejectUnauthorized?: boolean } = {}): Promise<Handshake> {
    const srv = createServer({ key: server.keyPem, cert: server.certPem, ca: options.trust ?? [ca.certPem], requestCert: true, rejectUnauthorized: options.rejectUnauthorized ?? true });
    servers.push(srv);
    srv.on("connection", (s) => sockets.push(s as TLSSocket));
    const outcome = new Promise<Handshake>((resolve) => {
      srv.once("secureConnection", (s) => resolve({ ok: true, peer: s.getPeerCertificate() }));
      srv.once("tlsClientError", (error) => resolve({ ok: false, error }));
    });
    srv.listen(0, "127.0.0.1");
    await once(srv, "listening");
    const { port } = srv.address() as { port: number };
    // servername "localhost": what clients dial, so the server certificate must match it.
    const sock = connect({ host: "127.0.0.1", port, servername: "localhost", ca: [ca.certPem], ...(client ? { cert: client.certPem, key: client.keyPem } : {}) });
    sockets.push(sock);
    sock.on("error", () => {}); // the server's verdict is what the test reads
    return outcome;
  }

  async function identityOf(client: IssuedPem | undefined, options?: Parameters<typeof handshake>[1]) {
    const result = await handshake(client, options);
    if (!result.ok) throw result.error;
    return identityFromPeerCertificate(result.peer, TD);
  }

  it("accepts a certificate with exactly one SPIFFE id in the trust domain", async () => {
    expect(await identityOf(await issue("managed_agent", "a1"))).toEqual({
      ok: true,
      identity: { uri: "spiffe://baton.local/managed_agent/a1", trustDomain: TD, role: "managed_agent", name: "a1" },
    });
  });

  it("accepts a server-role certificate used as a client (it has DNS and IP SANs too)", async () => {
    expect(await identityOf(await issue("resource_manager", "rm"))).toMatchObject({ ok: true, identity: { role: "resource_manager", name: "rm" } });
  });

  it.each<[string, string[], RegExp]>([
    ["two URI SANs", ["spiffe://baton.local/operator/a", "spiffe://baton.local/operator/b"], /2 URI SANs/],
    ["no URI SAN", [], /no URI SAN/],
    ["an id in another trust domain", ["spiffe://other.example/operator/ops"], /not in trust domain/],
    ["an unknown role", ["spiffe://baton.local/root/ops"], /root/],
    ["an extra path segment", ["spiffe://baton.local/operator/ops/x"], /path segments/],
    ["a second id smuggled after a comma", ["spiffe://baton.local/operator/a, URI:spiffe://baton.local/operator/b"], /not a SPIFFE id/],
  ])("refuses a certificate with %s", async (_what, uriSans, reason) => {
    const result = await identityOf(await issue("operator", "ops", { uriSans }));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  });

  it("refuses a certificate from a trusted CA of another trust domain", async () => {
    const foreign = await issueCertificate({ ca: otherCa, trustDomain: "other.example", role: "operator", name: "ops" });
    const result = await identityOf(foreign, { trust: [ca.certPem, otherCa.certPem] });
    expect(result).toMatchObject({ ok: false, reason: expect.stringMatching(/not in trust domain/) });
  });

  it("refuses a connection without a client certificate", async () => {
    expect(await identityOf(undefined, { rejectUnauthorized: false })).toEqual({ ok: false, reason: "no client certificate" });
    expect(identityFromPeerCertificate(undefined, TD).ok).toBe(false);
  });

  it("the handshake itself refuses an expired certificate and one from an untrusted CA", async () => {
    const notAfter = new Date(Date.now() - DAY);
    const expired = await issue("operator", "old", { notBefore: new Date(notAfter.getTime() - DAY), notAfter });
    expect((await handshake(expired)).ok).toBe(false);
    const foreign = await issueCertificate({ ca: otherCa, trustDomain: "other.example", role: "operator", name: "ops" });
    expect((await handshake(foreign)).ok).toBe(false);
  });
});

describe("certificate directory", () => {
  let dir: string;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const fresh = () => (dir = mkdtempSync(join(tmpdir(), "baton-certs-")));
  const mode = (path: string) => statSync(path).mode & 0o777;
  const serialOf = (path: string) => readCertificateInfo(readFileSync(path, "utf8")).serial;

  it("writes ca.pem and a 0600 ca.key, and will not replace them without force", async () => {
    fresh();
    const paths = await initCertificateAuthority({ dir, trustDomain: TD });
    expect(paths).toEqual({ certPath: join(dir, "ca.pem"), keyPath: join(dir, "ca.key") });
    expect(mode(paths.keyPath)).toBe(0o600);
    expect(new X509Certificate(readFileSync(paths.certPath)).ca).toBe(true);
    const before = serialOf(paths.certPath);
    await expect(initCertificateAuthority({ dir, trustDomain: TD })).rejects.toThrow(/already exists/);
    expect(serialOf(paths.certPath)).toBe(before);
    await initCertificateAuthority({ dir, trustDomain: TD, force: true });
    expect(serialOf(paths.certPath)).not.toBe(before);
    expect(readdirSync(dir).sort()).toEqual(["ca.key", "ca.pem"]);
  });

  it("issues <name>.pem and a 0600 <name>.key signed by the CA in the directory", async () => {
    fresh();
    await initCertificateAuthority({ dir, trustDomain: TD });
    const paths = await issueToDirectory({ dir, trustDomain: TD, role: "managed_agent", name: "agent-1" });
    expect(paths).toEqual({ certPath: join(dir, "agent-1.pem"), keyPath: join(dir, "agent-1.key") });
    expect(mode(paths.keyPath)).toBe(0o600);
    const leaf = new X509Certificate(readFileSync(paths.certPath));
    expect(leaf.checkIssued(new X509Certificate(readFileSync(join(dir, "ca.pem"))))).toBe(true);
    expect(leaf.subjectAltName).toBe("URI:spiffe://baton.local/managed_agent/agent-1");
  });

  it.each([
    ["the CA's own file name", "ca"],
    ["a path", "../escape"],
  ])("refuses to issue under %s", async (_what, name) => {
    fresh();
    await initCertificateAuthority({ dir, trustDomain: TD });
    const caBefore = readFileSync(join(dir, "ca.key"), "utf8");
    await expect(issueToDirectory({ dir, trustDomain: TD, role: "operator", name })).rejects.toThrow(Error);
    expect(readFileSync(join(dir, "ca.key"), "utf8")).toBe(caBefore);
    expect(readdirSync(dir).sort()).toEqual(["ca.key", "ca.pem"]);
  });

  it("refuses to issue without a CA", async () => {
    fresh();
    await expect(issueToDirectory({ dir, trustDomain: TD, role: "operator", name: "x" })).rejects.toThrow(/no CA/);
  });

  it("ensureDevelopmentCertificates makes what is missing, once", async () => {
    fresh();
    const first = await ensureDevelopmentCertificates({ dir, trustDomain: TD });
    expect(first).toEqual({
      caPath: join(dir, "ca.pem"),
      coordinator: { certPath: join(dir, "coordinator.pem"), keyPath: join(dir, "coordinator.key") },
      operator: { certPath: join(dir, "operator.pem"), keyPath: join(dir, "operator.key") },
      created: ["ca", "coordinator", "operator"],
    });
    expect(readdirSync(dir).sort()).toEqual(["ca.key", "ca.pem", "coordinator.key", "coordinator.pem", "operator.key", "operator.pem"]);
    for (const f of ["ca.key", "coordinator.key", "operator.key"]) expect(mode(join(dir, f))).toBe(0o600);
    expect(readCertificateInfo(readFileSync(first.coordinator.certPath, "utf8")).uris).toEqual(["spiffe://baton.local/coordinator/coordinator"]);
    expect(readCertificateInfo(readFileSync(first.operator.certPath, "utf8")).uris).toEqual(["spiffe://baton.local/operator/operator"]);

    const serials = ["ca.pem", "coordinator.pem", "operator.pem"].map((f) => serialOf(join(dir, f)));
    const second = await ensureDevelopmentCertificates({ dir, trustDomain: TD });
    expect(second.created).toEqual([]);
    expect(["ca.pem", "coordinator.pem", "operator.pem"].map((f) => serialOf(join(dir, f)))).toEqual(serials);
  });

  it("ensureDevelopmentCertificates remakes only an expired or missing leaf", async () => {
    fresh();
    await ensureDevelopmentCertificates({ dir, trustDomain: TD });
    const coordinatorSerial = serialOf(join(dir, "coordinator.pem"));
    const notAfter = new Date(Date.now() - DAY);
    await issueToDirectory({ dir, trustDomain: TD, role: "operator", name: "operator", notBefore: new Date(notAfter.getTime() - DAY), notAfter });
    expect((await ensureDevelopmentCertificates({ dir, trustDomain: TD })).created).toEqual(["operator"]);
    expect(readCertificateInfo(readFileSync(join(dir, "operator.pem"), "utf8")).notAfter.getTime()).toBeGreaterThan(Date.now());
    expect(serialOf(join(dir, "coordinator.pem"))).toBe(coordinatorSerial);
  });

  it("ensureDevelopmentCertificates will not mix trust domains", async () => {
    fresh();
    await initCertificateAuthority({ dir, trustDomain: TD });
    await expect(ensureDevelopmentCertificates({ dir, trustDomain: "other.example" })).rejects.toThrow(/trust domain/);
    expect(readdirSync(dir).sort()).toEqual(["ca.key", "ca.pem"]);
  });

});

// Go's crypto/x509 (buf, grpcurl, Envoy's control planes) refuses a PrintableString with "_"
// in it, and builds chains by comparing the issuer's and the CA subject's bytes.
describe("names that strict parsers accept", () => {
  const ROLES: Array<[RoleName, string]> = [
    ["coordinator", "coordinator_1"],
    ["managed_agent", "task_executor_1"],
    ["resource_manager", "resource_manager_1"],
    ["performance_monitor", "perf_monitor_1"],
    ["operator", "ops_team_1"],
  ];
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "baton-names-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // The DER of a certificate's issuer and subject Names, and each attribute's string type.
  function names(pem: string): { issuer: string; subject: string; tags: number[] } {
    const tbs = forge.asn1.fromDer(forge.pem.decode(pem)[0]!.body).value[0] as forge.asn1.Asn1;
    const [, , , issuer, , subject] = tbs.value as forge.asn1.Asn1[];
    const tags = [issuer!, subject!].flatMap((name) => (name.value as forge.asn1.Asn1[]).map((rdn) => ((rdn.value[0] as forge.asn1.Asn1).value[1] as forge.asn1.Asn1).type));
    return { issuer: forge.asn1.toDer(issuer!).toHex(), subject: forge.asn1.toDer(subject!).toHex(), tags };
  }

  it.each(ROLES)("a %s certificate names %s in UTF8Strings, its issuer exactly as the CA names itself", async (role, name) => {
    const leaf = await issue(role, name);
    const got = names(leaf.certPem);
    expect(got.tags.every((t) => t === forge.asn1.Type.UTF8)).toBe(true);
    expect(got.issuer).toBe(names(ca.certPem).subject);
    expect(names(ca.certPem).tags.every((t) => t === forge.asn1.Type.UTF8)).toBe(true);
  });

  it.each(ROLES)("openssl prints and verifies a %s certificate named %s", async (role, name) => {
    const leaf = await issue(role, name);
    writeFileSync(join(dir, "ca.pem"), ca.certPem);
    writeFileSync(join(dir, `${name}.pem`), leaf.certPem);
    const text = await run("openssl", ["x509", "-noout", "-text", "-in", join(dir, `${name}.pem`)]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`CN = ${name}`);
    const parsed = await run("openssl", ["asn1parse", "-in", join(dir, `${name}.pem`)]);
    expect(parsed.stdout).toContain(`UTF8STRING        :${name}`);
    expect(parsed.stdout).not.toContain("PRINTABLESTRING");
    const verify = await run("openssl", ["verify", "-x509_strict", "-purpose", role === "managed_agent" || role === "operator" ? "sslclient" : "sslserver", "-CAfile", join(dir, "ca.pem"), join(dir, `${name}.pem`)]);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout.trim()).toBe(`${join(dir, `${name}.pem`)}: OK`);
  });

  it("a CA made before names were UTF8Strings still issues leaves that chain to it", async () => {
    // Such a CA's subject is PrintableStrings (forge's default): the leaf's issuer must keep those bytes.
    const { privateKey, publicKey } = await new Promise<{ privateKey: string; publicKey: string }>((resolve, reject) =>
      import("node:crypto").then(({ generateKeyPair }) =>
        generateKeyPair("rsa", { modulusLength: 2048, publicKeyEncoding: { type: "spki", format: "pem" }, privateKeyEncoding: { type: "pkcs1", format: "pem" } }, (err, pub, priv) => (err ? reject(err) : resolve({ publicKey: pub, privateKey: priv }))),
      ),
    );
    const old = forge.pki.createCertificate();
    old.publicKey = forge.pki.publicKeyFromPem(publicKey);
    old.serialNumber = "4f01";
    old.validity.notBefore = new Date(Date.now() - DAY);
    old.validity.notAfter = new Date(Date.now() + DAY);
    const attrs = [{ name: "commonName", value: `baton CA (${TD})` }, { name: "organizationName", value: "baton" }];
    old.setSubject(attrs);
    old.setIssuer(attrs);
    old.setExtensions([{ name: "basicConstraints", cA: true, critical: true }, { name: "keyUsage", keyCertSign: true, critical: true }, { name: "subjectKeyIdentifier" }, { name: "subjectAltName", altNames: [{ type: 6, value: `spiffe://${TD}` }] }]);
    old.sign(forge.pki.privateKeyFromPem(privateKey), forge.md.sha256.create());
    const oldCa = { certPem: forge.pki.certificateToPem(old), keyPem: privateKey };
    expect(names(oldCa.certPem).tags.every((t) => t === forge.asn1.Type.PRINTABLESTRING)).toBe(true);
    const leaf = await issueCertificate({ ca: oldCa, trustDomain: TD, role: "managed_agent", name: "task_executor_1" });
    expect(names(leaf.certPem).issuer).toBe(names(oldCa.certPem).subject);
    writeFileSync(join(dir, "old-ca.pem"), oldCa.certPem);
    writeFileSync(join(dir, "old-leaf.pem"), leaf.certPem);
    expect((await run("openssl", ["verify", "-CAfile", join(dir, "old-ca.pem"), join(dir, "old-leaf.pem")])).code).toBe(0);
  });

  it("keeps a CA's non-ASCII common name intact in its leaves' issuer", async () => {
    const accented = await createCertificateAuthority({ trustDomain: TD, commonName: "Équipe baton_ca" });
    expect(readCertificateInfo(accented.certPem).subjectCN).toBe("Équipe baton_ca");
    const leaf = await issueCertificate({ ca: accented, trustDomain: TD, role: "operator", name: "ops_1" });
    expect(readCertificateInfo(leaf.certPem).issuerCN).toBe("Équipe baton_ca");
    expect(names(leaf.certPem).issuer).toBe(names(accented.certPem).subject);
  });
});
