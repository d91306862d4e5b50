import { mkdtempSync, rmSync, statSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BUF, ROOT, TSX, run, startBaton, type BatonProcess } from "../helpers/process.js";

const dirs: string[] = [];
const procs: BatonProcess[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop("SIGKILL");
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "baton-cli-"));
  dirs.push(d);
  return d;
}

const baton = (args: string[], cwd?: string) => run(process.execPath, ["--import", TSX, `${ROOT}src/main.ts`, ...args], { ...(cwd ? { cwd } : {}), timeoutMs: 60_000 });

describe("baton certs", () => {
  it("init makes a CA; issue makes a SPIFFE certificate; keys are private", async () => {
    const dir = tempDir();
    const init = await baton(["certs", "init", "--dir", dir, "--trust-domain", "example.org"]);
    expect(init.code).toBe(0);
    expect(existsSync(join(dir, "ca.pem"))).toBe(true);
    expect(statSync(join(dir, "ca.key")).mode & 0o777).toBe(0o600);
    const issue = await baton(["certs", "issue", "--dir", dir, "--trust-domain", "example.org", "--role", "managed_agent", "--name", "task_executor_1"]);
    expect(issue.code).toBe(0);
    expect(issue.stdout).toContain("spiffe://example.org/managed_agent/task_executor_1");
    const { X509Certificate } = await import("node:crypto");
    const { readFileSync } = await import("node:fs");
    const cert = new X509Certificate(readFileSync(join(dir, "task_executor_1.pem")));
    expect(cert.subjectAltName).toContain("URI:spiffe://example.org/managed_agent/task_executor_1");
    expect(cert.checkIssued(new X509Certificate(readFileSync(join(dir, "ca.pem"))))).toBe(true);
    expect(statSync(join(dir, "task_executor_1.key")).mode & 0o777).toBe(0o600);
  });

  it("refuses to overwrite a CA without --force, and refuses an unknown role", async () => {
    const dir = tempDir();
    expect((await baton(["certs", "init", "--dir", dir])).code).toBe(0);
    const again = await baton(["certs", "init", "--dir", dir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/exists/);
    const bad = await baton(["certs", "issue", "--dir", dir, "--role", "wizard", "--name", "x"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--role must be one of/);
  });
});

describe("baton certs renew and revoke, from the command line", () => {
  it("renews with a new serial and the old one revoked; revokes by name; refuses neither name nor serial", async () => {
    const dir = tempDir();
    expect((await baton(["certs", "init", "--dir", dir])).code).toBe(0);
    expect((await baton(["certs", "issue", "--dir", dir, "--role", "managed_agent", "--name", "a1"])).code).toBe(0);
    const renew = await baton(["certs", "renew", "--dir", dir, "--name", "a1", "--revoke-old"]);
    expect(renew.code).toBe(0);
    const m = /serial ([0-9a-f]+) -> ([0-9a-f]+); revoked \1/.exec(renew.stdout);
    expect(m, renew.stdout).not.toBeNull();
    const { readDenyList } = await import("../../src/security/index.js");
    expect(readDenyList(join(dir, "revoked.json")).has(m![1]!)).toBe(true);
    const revoke = await baton(["certs", "revoke", "--dir", dir, "--name", "a1", "--reason", "key compromise"]);
    expect(revoke.code).toBe(0);
    expect(revoke.stdout).toContain(`revoked serial ${m![2]}`);
    const bad = await baton(["certs", "revoke", "--dir", dir]);
    expect(bad.code).toBe(2);
  });
});

describe("baton serve", () => {
  it("serves on embedded defaults with development certificates, answers health, stops on SIGTERM", async () => {
    const cwd = tempDir();
    const p = startBaton(["serve", "--listen", "127.0.0.1:0", "--dev-certs"], { cwd, env: { BATON_ADMIN_LISTEN: "127.0.0.1:0" } });
    procs.push(p);
    const serving = await p.waitForLine((l) => l.msg === "baton serving");
    const port = Number(String(serving.listen).split(":").pop());
    expect(port).toBeGreaterThan(0);
    for (const f of ["ca.pem", "operator.pem", "operator.key", "coordinator.pem"]) expect(existsSync(join(cwd, "certs", f))).toBe(true);
    const out = await run(BUF, ["curl", "--protocol", "grpc", "--cacert", "certs/ca.pem", "--cert", "certs/operator.pem", "--key", "certs/operator.key", "--data", "{}", `https://localhost:${port}/grpc.health.v1.Health/Check`], { cwd });
    expect(JSON.parse(out.stdout)).toEqual({ status: "SERVING" });
    // The journal is SQLite in ./data by default.
    expect(existsSync(join(cwd, "data", "journal.sqlite"))).toBe(true);
    expect(await p.stop("SIGTERM")).toBe(0);
    expect(p.lines.some((l) => l.msg === "baton stopped")).toBe(true);
  });

  it("a bad flag exits 2 with the usage; a bad config exits 78 naming the setting", async () => {
    const bad = await baton(["serve", "--no-such-flag"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("usage:");
    const cwd = tempDir();
    writeFileSync(join(cwd, "baton.json"), JSON.stringify({ session: { heartbeatIntervalMs: -1 } }));
    const cfg = await baton(["serve", "--config", "baton.json"], cwd);
    expect(cfg.code).toBe(78);
    expect(cfg.stderr).toMatch(/session.heartbeatIntervalMs must be a positive whole number/);
  });

  it("missing certificates are named, with the command that makes them", async () => {
    const cwd = tempDir();
    const out = await baton(["serve", "--listen", "127.0.0.1:0"], cwd);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/cannot read the CA certificate certs\/ca.pem/);
    expect(out.stderr).toMatch(/baton certs init/);
  });
});
