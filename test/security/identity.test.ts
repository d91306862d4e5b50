import { X509Certificate } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { Code } from "../../src/errors.js";
import { clientCredentials, createChannel, createClient, type Channel } from "../../src/rpc/index.js";
import { identityFromPeerCertificate, parseSpiffeId, parseSubjectAltName, readCertificateInfo, spiffeId } from "../../src/security/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { startServer, type TestServer } from "../helpers/server.js";

describe("SPIFFE ids", () => {
  it.each([
    ["spiffe://baton.local/managed_agent/task_executor_1", { trustDomain: "baton.local", role: "managed_agent", name: "task_executor_1" }],
    ["spiffe://example.org/operator/alice", { trustDomain: "example.org", role: "operator", name: "alice" }],
  ])("parses %s", (uri, expected) => {
    expect(parseSpiffeId(uri)).toMatchObject({ uri, ...expected });
  });

  it.each([
    "https://baton.local/managed_agent/a",
    "spiffe://baton.local/wizard/a",
    "spiffe://baton.local/managed_agent",
    "spiffe://baton.local/managed_agent/a/b",
    "spiffe://baton.local//a",
    "spiffe://baton.local/managed_agent/a b",
    "spiffe://baton.local/managed_agent/..",
    "spiffe:///managed_agent/a",
    "",
  ])("refuses %j", (uri) => {
    expect(parseSpiffeId(uri)).toBeUndefined();
  });

  it("refuses to make an id from a bad name", () => {
    expect(() => spiffeId("baton.local", "managed_agent", "a/b")).toThrow(/name/);
  });

  it("splits Node's subjectaltname, JSON-quoted values included", () => {
    expect(parseSubjectAltName('URI:spiffe://a/operator/x, DNS:localhost, URI:"spiffe://a/operator/y, URI:spiffe://a/operator/z"')).toEqual([
      { type: "URI", value: "spiffe://a/operator/x" },
      { type: "DNS", value: "localhost" },
      { type: "URI", value: "spiffe://a/operator/y, URI:spiffe://a/operator/z" },
    ]);
  });
});

describe("certificates from node-forge", () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await makePki("example.org");
  });

  it("a leaf chains to its CA and has exactly one SPIFFE URI SAN", async () => {
    const leaf = await pki.issue("managed_agent", "a1");
    const cert = new X509Certificate(leaf.certPem);
    const ca = new X509Certificate(pki.ca.certPem);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(readCertificateInfo(leaf.certPem).uris).toEqual(["spiffe://example.org/managed_agent/a1"]);
    expect(ca.ca).toBe(true);
    expect(cert.ca).toBe(false);
  });

  it("serials are unique and positive", async () => {
    const a = await pki.issue("operator", "x");
    const b = await pki.issue("operator", "x");
    expect(a.serial).not.toBe(b.serial);
    expect(Number.parseInt(a.serial.slice(0, 2), 16)).toBeLessThan(0x80);
  });

  it("server certificates name localhost", () => {
    expect(readCertificateInfo(pki.server.certPem).dnsNames).toEqual(["localhost"]);
  });
});

describe("peer identity over real mutual TLS", () => {
  let pki: TestPki;
  let srv: TestServer;
  const channels: Channel[] = [];
  beforeAll(async () => {
    pki = await makePki();
  });
  afterAll(() => pki.cleanup());
  afterEach(async () => {
    for (const c of channels.splice(0)) c.close();
    await srv?.stop();
  });

  async function call(extra: Record<string, unknown>) {
    const leaf = await pki.issue("operator", "ops", extra);
    const ch = createChannel(srv.address, clientCredentials({ ca: pki.ca.certPem, cert: leaf.certPem, key: leaf.keyPem }));
    channels.push(ch);
    return createClient(Control, ch).listAgents({}, { deadline: 5000 });
  }

  it("accepts exactly one SPIFFE id in the trust domain", async () => {
    srv = await startServer(pki);
    await expect(call({})).resolves.toBeDefined();
  });

  it.each([
    ["no URI SAN", { uriSans: [] }, /no URI SAN/],
    ["two URI SANs", { uriSans: ["spiffe://baton.local/operator/a", "spiffe://baton.local/operator/b"] }, /2 URI SANs/],
    ["another trust domain", { uriSans: ["spiffe://evil.example/operator/ops"] }, /not in trust domain/],
    ["an unknown role", { uriSans: ["spiffe://baton.local/root/ops"] }, /is not a SPIFFE id/],
  ])("refuses a certificate with %s: UNAUTHENTICATED", async (_what, extra, reason) => {
    srv = await startServer(pki);
    await expect(call(extra)).rejects.toMatchObject({ code: Code.UNAUTHENTICATED, details: expect.stringMatching(reason) });
    // Others are unaffected.
    await expect(call({})).resolves.toBeDefined();
  });

  it("refuses an expired certificate at the handshake", async () => {
    srv = await startServer(pki);
    const past = new Date(Date.now() - 2 * 86_400_000);
    await expect(call({ notBefore: new Date(past.getTime() - 86_400_000), notAfter: past })).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    await expect(call({})).resolves.toBeDefined();
  });

  it("identityFromPeerCertificate refuses no certificate at all", () => {
    expect(identityFromPeerCertificate(undefined, "baton.local")).toEqual({ ok: false, reason: "no client certificate" });
  });
});
