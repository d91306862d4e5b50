import { X509Certificate } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import { describe, expect, it } from "vitest";
import { createAuthenticator, normalizeSerial } from "../../src/security/index.js";
import { makePki } from "../helpers/pki.js";

/** The fields of a peer certificate Node's TLS socket gives, from a real certificate. */
function peerCertificate(pem: string): PeerCertificate {
  const x = new X509Certificate(pem);
  return { raw: x.raw, subjectaltname: x.subjectAltName ?? "", serialNumber: x.serialNumber } as PeerCertificate;
}

describe("the authenticator", () => {
  it("reads a connection's certificate once but asks about revocation on every call", async () => {
    const pki = await makePki();
    const leaf = await pki.issue("operator", "eve");
    const revoked = new Set<string>();
    const authenticate = createAuthenticator({ trustDomain: "baton.local", isRevoked: (serial) => revoked.has(serial) });
    const cert = peerCertificate(leaf.certPem);
    const peer = { address: "127.0.0.1:5000", certificate: cert, headers: new Map<string, string>() };
    const first = authenticate(peer);
    expect(first).toMatchObject({ ok: true, identity: { role: "operator", name: "eve" }, serial: normalizeSerial(leaf.serial) });
    // The same certificate object (one connection) is not parsed again: what it said is kept.
    cert.subjectaltname = "URI:spiffe://baton.local/operator/someone-else";
    expect(authenticate(peer)).toEqual(first);
    revoked.add(normalizeSerial(leaf.serial));
    expect(authenticate(peer)).toEqual({ ok: false, reason: expect.stringMatching(new RegExp(`certificate serial ${normalizeSerial(leaf.serial)} \\(spiffe://baton.local/operator/eve\\) is revoked`)) });
    revoked.clear();
    expect(authenticate(peer)).toEqual(first);
  });

  it("refuses a certificate of another trust domain on every call, and reads each certificate for itself", async () => {
    const pki = await makePki();
    const authenticate = createAuthenticator({ trustDomain: "baton.local" });
    const foreign = peerCertificate((await pki.issue("operator", "ops", { uriSans: ["spiffe://evil.example/operator/ops"] })).certPem);
    const headers = new Map<string, string>();
    expect(authenticate({ address: "127.0.0.1:1", certificate: foreign, headers })).toEqual({ ok: false, reason: "spiffe://evil.example/operator/ops is not in trust domain baton.local" });
    expect(authenticate({ address: "127.0.0.1:1", certificate: foreign, headers })).toMatchObject({ ok: false });
    const own = peerCertificate((await pki.issue("managed_agent", "a1")).certPem);
    expect(authenticate({ address: "127.0.0.1:2", certificate: own, headers })).toMatchObject({ ok: true, identity: { role: "managed_agent", name: "a1" } });
    expect(authenticate({ address: "127.0.0.1:3", certificate: undefined, headers })).toEqual({ ok: false, reason: "no client certificate" });
  });
});
