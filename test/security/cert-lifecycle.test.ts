import { createPrivateKey, X509Certificate } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { certs, UsageError } from "../../src/cli/index.js";
import {
  DEFAULT_REVOKED_FILE,
  initCertificateAuthority,
  issueToDirectory,
  normalizeSerial,
  readCertificateInfo,
  readDenyList,
  renewInDirectory,
  revokeCertificate,
  revokeInDirectory,
} from "../../src/security/index.js";

const TD = "baton.local";
const DAY = 86_400_000;

let tmp: string;
let dir: string;
const revokedPath = () => join(dir, DEFAULT_REVOKED_FILE);
const pemOf = (name: string) => readFileSync(join(dir, `${name}.pem`), "utf8");

// One CA for the file (key generation is the slow part), copied into each test's own directory.
let caTemplate: string;
beforeAll(async () => {
  caTemplate = mkdtempSync(join(tmpdir(), "baton-cert-lifecycle-ca-"));
  await initCertificateAuthority({ dir: caTemplate, trustDomain: TD });
});
afterAll(() => {
  rmSync(caTemplate, { recursive: true, force: true });
});

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), "baton-cert-lifecycle-"));
  dir = join(tmp, "certs");
  mkdirSync(dir, { mode: 0o700 });
  for (const file of ["ca.pem", "ca.key"]) copyFileSync(join(caTemplate, file), join(dir, file));
});

afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe("normalizeSerial", () => {
  it.each([
    ["0A:1B", "a1b"],
    ["00FF", "ff"],
    ["DEADBEEF", "deadbeef"],
    ["deadbeef", "deadbeef"],
    ["00", "0"],
    [" 01:02 ", "102"],
  ])("%j -> %j", (input, expected) => {
    expect(normalizeSerial(input)).toBe(expected);
  });

  it.each(["", ":", "xyz", "0x1f", "12 34", "-1"])("rejects %j", (input) => {
    expect(() => normalizeSerial(input)).toThrow(/not hexadecimal/);
  });

  it("makes Node's upper-case serialNumber equal to the issued serial", async () => {
    await issueToDirectory({ dir, role: "operator", name: "op" });
    const x = new X509Certificate(pemOf("op"));
    expect(x.serialNumber).toMatch(/^[0-9A-F]+$/);
    expect(normalizeSerial(x.serialNumber)).toBe(normalizeSerial(readCertificateInfo(pemOf("op")).serial));
  });
});

describe("the deny list", () => {
  it("is empty when the file is missing", () => {
    expect(readDenyList(join(tmp, "nope.json")).size).toBe(0);
  });

  it("throws naming the file on malformed JSON", () => {
    const path = join(tmp, "bad.json");
    writeFileSync(path, "{ not json");
    expect(() => readDenyList(path)).toThrow(path);
    expect(() => readDenyList(path)).toThrow(/not valid JSON/);
  });

  it.each([
    ["[]", /"revoked" array/],
    ['{"revoked": {}}', /"revoked" array/],
    ['{"revoked": [1]}', /revoked\[0\] is not an object/],
    ['{"revoked": [{"serial": "zz", "revokedAt": "2024-01-01T00:00:00Z", "reason": "x"}]}', /revoked\[0\]\.serial/],
    ['{"revoked": [{"serial": "ab", "revokedAt": "yesterday", "reason": "x"}]}', /revoked\[0\]\.revokedAt/],
    ['{"revoked": [{"serial": "ab", "revokedAt": "2024-01-01T00:00:00Z"}]}', /revoked\[0\]\.reason/],
  ])("throws naming the file and the fault for %s", (content, fault) => {
    const path = join(tmp, "bad.json");
    writeFileSync(path, content);
    expect(() => readDenyList(path)).toThrow(path);
    expect(() => readDenyList(path)).toThrow(fault);
  });

  it("normalizes serials written by hand", () => {
    const path = join(tmp, "hand.json");
    writeFileSync(path, JSON.stringify({ revoked: [{ serial: "00:AB:CD", revokedAt: "2024-01-01T00:00:00Z", reason: "keyCompromise" }] }));
    expect([...readDenyList(path)]).toEqual(["abcd"]);
  });

  it("revokeCertificate appends once, atomically, with the documented shape", () => {
    const path = revokedPath();
    const before = Date.now();
    expect(revokeCertificate(path, { serial: "0A:1B", spiffeId: "spiffe://baton.local/operator/op" })).toEqual({ added: true });
    expect(revokeCertificate(path, { serial: "a1b", reason: "again" })).toEqual({ added: false });
    expect(revokeCertificate(path, { serial: "FF", reason: "keyCompromise" })).toEqual({ added: true });
    const doc = JSON.parse(readFileSync(path, "utf8")) as { revoked: Array<Record<string, string>> };
    expect(doc.revoked).toHaveLength(2);
    expect(doc.revoked[0]).toMatchObject({ serial: "a1b", spiffeId: "spiffe://baton.local/operator/op", reason: "unspecified" });
    expect(Date.parse(doc.revoked[0]!.revokedAt!)).toBeGreaterThanOrEqual(before - 1000);
    expect(doc.revoked[1]).toEqual({ serial: "ff", revokedAt: expect.any(String), reason: "keyCompromise" });
    expect(readDenyList(path)).toEqual(new Set(["a1b", "ff"]));
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("revokeCertificate refuses to overwrite a malformed list", () => {
    const path = revokedPath();
    writeFileSync(path, "garbage");
    expect(() => revokeCertificate(path, { serial: "ab" })).toThrow(path);
    expect(readFileSync(path, "utf8")).toBe("garbage");
  });

  it("revokeCertificate rejects a non-hex serial without creating the file", () => {
    expect(() => revokeCertificate(revokedPath(), { serial: "nope" })).toThrow(/not hexadecimal/);
    expect(existsSync(revokedPath())).toBe(false);
  });
});

describe("renewInDirectory", () => {
  it("keeps the SPIFFE id and SANs, and changes the key and serial", async () => {
    await issueToDirectory({ dir, role: "coordinator", name: "coord", dnsNames: ["localhost", "coord.internal"], ipAddresses: ["127.0.0.1", "10.0.0.7"] });
    const oldPem = pemOf("coord");
    const oldKey = readFileSync(join(dir, "coord.key"), "utf8");
    const old = readCertificateInfo(oldPem);

    const renewed = await renewInDirectory({ dir, trustDomain: TD, name: "coord" });

    const newPem = pemOf("coord");
    const newKey = readFileSync(join(dir, "coord.key"), "utf8");
    const now = readCertificateInfo(newPem);
    expect(renewed).toEqual({
      certPath: join(dir, "coord.pem"),
      keyPath: join(dir, "coord.key"),
      oldSerial: normalizeSerial(old.serial),
      newSerial: normalizeSerial(now.serial),
      spiffeId: "spiffe://baton.local/coordinator/coord",
    });
    expect(now.serial).not.toBe(old.serial);
    expect(newKey).not.toBe(oldKey);
    expect(now.uris).toEqual(["spiffe://baton.local/coordinator/coord"]);
    expect(now.dnsNames).toEqual(["localhost", "coord.internal"]);
    expect(now.ipAddresses).toEqual(["127.0.0.1", "10.0.0.7"]);
    expect(now.subjectCN).toBe("coord");
    const x = new X509Certificate(newPem);
    expect(x.checkPrivateKey(createPrivateKey(newKey))).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(oldKey))).toBe(false);
    expect(statSync(join(dir, "coord.key")).mode & 0o777).toBe(0o600);
    expect(existsSync(revokedPath())).toBe(false);
  });

  it("issues a certificate that verifies against the CA", async () => {
    await issueToDirectory({ dir, role: "managed_agent", name: "agent-1" });
    await renewInDirectory({ dir, name: "agent-1", validDays: 30 });
    const ca = new X509Certificate(readFileSync(join(dir, "ca.pem")));
    const leaf = new X509Certificate(pemOf("agent-1"));
    expect(leaf.checkIssued(ca)).toBe(true);
    expect(leaf.verify(ca.publicKey)).toBe(true);
    const days = (new Date(leaf.validTo).getTime() - Date.now()) / DAY;
    expect(days).toBeGreaterThan(29);
    expect(days).toBeLessThanOrEqual(30);
    // A client role keeps having no DNS or IP SANs.
    expect(readCertificateInfo(pemOf("agent-1"))).toMatchObject({ dnsNames: [], ipAddresses: [] });
  });

  it("renews an expired certificate", async () => {
    await issueToDirectory({ dir, role: "operator", name: "op", notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
    await renewInDirectory({ dir, name: "op" });
    expect(readCertificateInfo(pemOf("op")).notAfter.getTime()).toBeGreaterThan(Date.now() + 300 * DAY);
  });

  it("with revokeOld, puts the old serial (only) on the deny list", async () => {
    await issueToDirectory({ dir, role: "operator", name: "op" });
    const renewed = await renewInDirectory({ dir, name: "op", revokeOld: true });
    const denied = readDenyList(revokedPath());
    expect(denied).toEqual(new Set([renewed.oldSerial]));
    expect(denied.has(renewed.newSerial)).toBe(false);
    const doc = JSON.parse(readFileSync(revokedPath(), "utf8")) as { revoked: Array<Record<string, string>> };
    expect(doc.revoked[0]).toMatchObject({ spiffeId: "spiffe://baton.local/operator/op", reason: "superseded" });
  });

  it("says when there is no such certificate", async () => {
    await expect(renewInDirectory({ dir, name: "ghost" })).rejects.toThrow(`no certificate ${join(dir, "ghost.pem")}`);
  });

  it("says when there is no CA", async () => {
    await issueToDirectory({ dir, role: "operator", name: "op" });
    const bare = join(tmp, "bare");
    mkdirSync(bare);
    copyFileSync(join(dir, "op.pem"), join(bare, "op.pem"));
    copyFileSync(join(dir, "op.key"), join(bare, "op.key"));
    await expect(renewInDirectory({ dir: bare, name: "op" })).rejects.toThrow(`no CA in ${bare}`);
  });

  it("refuses a certificate another CA issued, leaving it in place", async () => {
    const other = join(tmp, "other");
    await initCertificateAuthority({ dir: other, trustDomain: TD });
    await issueToDirectory({ dir: other, role: "operator", name: "op" });
    copyFileSync(join(other, "op.pem"), join(dir, "op.pem"));
    copyFileSync(join(other, "op.key"), join(dir, "op.key"));
    const before = pemOf("op");
    await expect(renewInDirectory({ dir, name: "op" })).rejects.toThrow(/was not issued by the CA in/);
    expect(pemOf("op")).toBe(before);
  });

  it("refuses a trust domain other than the certificate's", async () => {
    await issueToDirectory({ dir, role: "operator", name: "op" });
    await expect(renewInDirectory({ dir, name: "op", trustDomain: "other.example" })).rejects.toThrow(/trust domain baton\.local, not other\.example/);
  });

  it.each(["../op", "ca", ""])("refuses the certificate name %j", async (name) => {
    await expect(renewInDirectory({ dir, name })).rejects.toThrow(/certificate name .* must be|the CA's own files/);
  });
});

describe("revokeInDirectory", () => {
  it("revokes by name, once", async () => {
    await issueToDirectory({ dir, role: "operator", name: "op" });
    const serial = normalizeSerial(readCertificateInfo(pemOf("op")).serial);
    const first = revokeInDirectory({ dir, name: "op", reason: "keyCompromise" });
    expect(first).toEqual({ serial, spiffeId: "spiffe://baton.local/operator/op", added: true, revokedPath: revokedPath() });
    expect(revokeInDirectory({ dir, name: "op" }).added).toBe(false);
    expect(readDenyList(revokedPath())).toEqual(new Set([serial]));
  });

  it("revokes by serial in any spelling", () => {
    expect(revokeInDirectory({ dir, serial: "00:AB:CD" })).toEqual({ serial: "abcd", added: true, revokedPath: revokedPath() });
    expect(revokeInDirectory({ dir, serial: "abcd" }).added).toBe(false);
    expect(readDenyList(revokedPath())).toEqual(new Set(["abcd"]));
  });

  it("says when the named certificate is missing", () => {
    expect(() => revokeInDirectory({ dir, name: "ghost" })).toThrow(`no certificate ${join(dir, "ghost.pem")}`);
  });
});

describe("baton certs renew and revoke", () => {
  it("renew prints the old and new serials", async () => {
    await issueToDirectory({ dir, role: "operator", name: "op" });
    const oldSerial = normalizeSerial(readCertificateInfo(pemOf("op")).serial);
    const lines = await certs("renew", { dir, name: "op", days: "10" }, {});
    const newSerial = normalizeSerial(readCertificateInfo(pemOf("op")).serial);
    expect(lines).toEqual([`renewed ${join(dir, "op.pem")} for spiffe://baton.local/operator/op: serial ${oldSerial} -> ${newSerial}`]);
    expect(existsSync(revokedPath())).toBe(false);
  });

  it("renew --revoke-old also revokes the old serial", async () => {
    await issueToDirectory({ dir, role: "operator", name: "op" });
    const oldSerial = normalizeSerial(readCertificateInfo(pemOf("op")).serial);
    const lines = await certs("renew", { dir, name: "op", "revoke-old": true }, {});
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`: serial ${oldSerial} -> [0-9a-f]+; revoked ${oldSerial}$`));
    expect(readDenyList(revokedPath())).toEqual(new Set([oldSerial]));
  });

  it("renew checks BATON_TRUST_DOMAIN when it is set", async () => {
    await issueToDirectory({ dir, role: "operator", name: "op" });
    await expect(certs("renew", { dir, name: "op" }, { BATON_TRUST_DOMAIN: "other.example" })).rejects.toThrow(/not other\.example/);
  });

  it("revoke --name prints the serial and SPIFFE id, then says it was already revoked", async () => {
    await issueToDirectory({ dir, role: "operator", name: "op" });
    const serial = normalizeSerial(readCertificateInfo(pemOf("op")).serial);
    expect(await certs("revoke", { dir, name: "op", reason: "lost laptop" }, {})).toEqual([`revoked serial ${serial} (spiffe://baton.local/operator/op)`]);
    expect(await certs("revoke", { dir, name: "op" }, {})).toEqual([`serial ${serial} (spiffe://baton.local/operator/op) was already revoked`]);
    const doc = JSON.parse(readFileSync(revokedPath(), "utf8")) as { revoked: Array<Record<string, string>> };
    expect(doc.revoked).toEqual([expect.objectContaining({ serial, reason: "lost laptop" })]);
  });

  it("revoke --serial normalizes the serial", async () => {
    expect(await certs("revoke", { dir, serial: "0A:1B" }, {})).toEqual(["revoked serial a1b"]);
    expect(await certs("revoke", { dir, serial: "A1B" }, {})).toEqual(["serial a1b was already revoked"]);
  });

  it.each([
    ["revoke", {}, /exactly one of --name or --serial/],
    ["revoke", { name: "op", serial: "ab" }, /exactly one of --name or --serial/],
    ["revoke", { serial: "xyz" }, /--serial: .*not hexadecimal/],
    ["renew", {}, /--name is required/],
    ["renew", { name: "op", days: "0" }, /--days must be a positive whole number/],
    ["rotate", {}, /use init, issue, renew, revoke or journal-key/],
  ])("%s %j is a usage error", async (sub, flags, message) => {
    const err = await certs(sub, { dir, ...flags }, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(message);
    expect(existsSync(revokedPath())).toBe(false);
  });
});
