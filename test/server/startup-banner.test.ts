import { spawn } from "node:child_process";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ROOT, TSX, startBaton, type BatonProcess } from "../helpers/process.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});
// tsx start-up alone takes seconds on a loaded machine.
const START_MS = 90_000;

function tempDir(): string {
  const d = realpathSync(mkdtempSync(join(tmpdir(), "baton-banner-")));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

describe("baton serve on a terminal", () => {
  it("prints a banner (where it listens, the certificates and data, the next command) and pretty log lines", async () => {
    const cwd = tempDir();
    // script(1) gives the server a pseudo-terminal, as a user's shell would.
    const command = `${process.execPath} --import ${TSX} ${ROOT}src/main.ts serve --listen 127.0.0.1:0 --dev-certs`;
    const child = spawn("script", ["-qfec", command, "/dev/null"], { cwd, env: { ...process.env, BATON_ADMIN_LISTEN: "127.0.0.1:0", BATON_STORE: "sqlite", BATON_DATA_DIR: join(cwd, "data") }, stdio: ["pipe", "pipe", "pipe"], detached: true });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          // The whole group: script and the server under it (ours, started above).
          process.kill(-child.pid!, "SIGKILL");
        }),
    );
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no banner within ${START_MS} ms: ${out}`)), START_MS);
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("a second signal forces")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", () => reject(new Error(`exited before its banner: ${out}`)));
    });
    const text = out.replace(/\x1b\[[0-9;]*m/g, "");
    const port = /gRPC\s+localhost:(\d+) \(mutual TLS, trust domain baton\.local\)/.exec(text)?.[1];
    expect(port, text).toBeDefined();
    expect(text).toMatch(/admin\s+http:\/\/127\.0\.0\.1:\d+\/metrics/);
    expect(text).toContain(`${cwd}/certs`);
    expect(text).toContain(`${cwd}/data (SQLite journal)`);
    expect(text).toContain(`baton context add local --address localhost:${port} --ca certs/ca.pem --cert certs/operator.pem --key certs/operator.key --select`);
    expect(text).toContain("baton watch");
    // Log lines are for people here: a time, a level and the message, not JSON.
    expect(text, text).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: baton serving /m);
    expect(text).not.toMatch(/^\{"level"/m);
  }, START_MS + 30_000);

  it("prints no banner when stdout is piped, only JSON lines", async () => {
    const cwd = tempDir();
    const p: BatonProcess = startBaton(["serve", "--listen", "127.0.0.1:0", "--dev-certs"], { cwd, env: { BATON_ADMIN_LISTEN: "127.0.0.1:0", BATON_STORE: "memory" } });
    cleanups.push(() => p.stop("SIGKILL"));
    await p.waitForLine((l) => l.msg === "baton serving", START_MS);
    expect(p.lines.filter((l) => "text" in l)).toEqual([]);
  }, START_MS + 30_000);
});
