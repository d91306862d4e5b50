import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildConfig, configFromFile } from "../../src/config.js";
import { openConfiguredStore } from "../../src/store/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { run, ROOT, startBaton, TSX, type BatonProcess } from "../helpers/process.js";
import { journalConfigFile } from "./journal-helpers.js";

// Issue 9 item 4: two servers on one data directory both loaded the journal and served.

let root: string;
let pki: TestPki;
const procs: BatonProcess[] = [];
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "baton-lock-"));
  pki = await makePki();
});
afterAll(() => {
  pki?.cleanup();
  rmSync(root, { recursive: true, force: true });
});
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop("SIGKILL");
});

let dirs = 0;
/** A folder with the test PKI, a journal key and a config for `baton serve` on `<dir>/data`. */
function serverDir(): { dir: string; configPath: string } {
  const dir = join(root, `d${++dirs}`);
  const configPath = journalConfigFile(dir, undefined, { listen: "127.0.0.1:0", adminListen: "", tls: { certsDir: dir } });
  for (const [name, content] of Object.entries({ "ca.pem": pki.ca.certPem, "coordinator.pem": pki.server.certPem, "coordinator.key": pki.server.keyPem })) writeFileSync(join(dir, name), content, { mode: 0o600 });
  return { dir, configPath };
}

async function serving(configPath: string): Promise<BatonProcess> {
  const proc = startBaton(["serve", "--config", configPath]);
  procs.push(proc);
  await proc.waitForLine((l) => l.msg === "baton serving", 60_000);
  return proc;
}

// Runs `baton serve` expecting it to refuse; a server that starts anyway runs until killed (code null).
const refusedServe = (configPath: string) => run(process.execPath, ["--import", TSX, `${ROOT}src/main.ts`, "serve", "--config", configPath], { timeoutMs: 30_000 });

describe("one server per data directory", () => {
  it("a second server refuses, naming the directory and the holder's pid; a SIGKILLed holder's lock is taken over; a stop releases it", async () => {
    const { dir, configPath } = serverDir();
    const first = await serving(configPath);
    const second = await refusedServe(configPath);
    expect(second.code).toBe(1);
    expect(second.stdout).not.toContain("baton serving");
    expect(second.stderr).toContain(join(dir, "data"));
    expect(second.stderr).toContain(`pid ${first.child.pid}`);

    // A holder killed outright leaves its lock file behind; the next server takes it over.
    await first.stop("SIGKILL");
    expect(existsSync(join(dir, "data", "baton.lock"))).toBe(true);
    const third = await serving(configPath);
    expect(readFileSync(join(dir, "data", "baton.lock"), "utf8")).toContain(`"pid":${third.child.pid}`);
    // A clean stop removes it.
    expect(await third.stop("SIGTERM")).toBe(0);
    expect(existsSync(join(dir, "data", "baton.lock"))).toBe(false);
  }, 180_000);

  it("a store opened in this process holds the directory until it is closed", async () => {
    const { dir, configPath } = serverDir();
    const config = buildConfig(configFromFile(configPath));
    const first = await openConfiguredStore(config);
    await expect(openConfiguredStore(config)).rejects.toThrow(new RegExp(`${join(dir, "data")}.*pid ${process.pid}`));
    await first.close();
    const again = await openConfiguredStore(config);
    await again.close();
  });

  it("a lock left by an earlier process with this process's pid (a container's pid 1) is stale", async () => {
    const { dir, configPath } = serverDir();
    const config = buildConfig(configFromFile(configPath));
    const store = await openConfiguredStore(config);
    await store.close();
    writeFileSync(join(dir, "data", "baton.lock"), JSON.stringify({ pid: process.pid, host: (await import("node:os")).hostname(), nonce: "earlier", since: new Date(0).toISOString() }));
    const again = await openConfiguredStore(config);
    await again.close();
  });

  it("a lock of another host is not judged from here: it refuses, naming the host", async () => {
    const { dir, configPath } = serverDir();
    const config = buildConfig(configFromFile(configPath));
    const store = await openConfiguredStore(config);
    await store.close();
    writeFileSync(join(dir, "data", "baton.lock"), JSON.stringify({ pid: 4242, host: "elsewhere.example", nonce: "n", since: new Date(0).toISOString() }));
    await expect(openConfiguredStore(config)).rejects.toThrow(/elsewhere\.example/);
  });
});
