import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ensureDevelopmentCertificates } from "../../src/security/index.js";
import { ROOT, TSX, run, startBaton, type BatonProcess } from "../helpers/process.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

// tsx start-up alone takes seconds on a loaded machine; a process that hangs is killed then.
const EXIT_MS = 90_000;

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "baton-startup-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** `baton <args>` run to its end; a process still running after EXIT_MS is killed (code null). */
const baton = (args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) => run(process.execPath, ["--import", TSX, `${ROOT}src/main.ts`, ...args], { cwd, env, timeoutMs: EXIT_MS });

/** A port on 127.0.0.1 that something else holds. */
async function takenPort(): Promise<number> {
  const blocker: Server = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise((resolve) => blocker.close(resolve)));
  return (blocker.address() as { port: number }).port;
}

/** The TCP ports process `pid` listens on (Linux: its socket fds matched against /proc/net/tcp). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // The fd closed while we looked.
    }
  }
  const ports: number[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      // st 0A is LISTEN; column 9 is the socket's inode.
      if (cols[3] === "0A" && inodes.has(cols[9]!)) ports.push(parseInt(cols[1]!.split(":")[1]!, 16));
    }
  }
  return ports.sort((a, b) => a - b);
}

describe("baton serve: start-up failures exit and name the setting", () => {
  it("a gRPC listen address in use exits 78 naming --listen / BATON_LISTEN / listen, leaving nothing open", async () => {
    const cwd = tempDir();
    const port = await takenPort();
    const out = await baton(["serve", "--listen", `127.0.0.1:${port}`, "--dev-certs"], cwd, { BATON_ADMIN_LISTEN: "127.0.0.1:0" });
    // Exiting at all (not killed at EXIT_MS) shows the admin server, store and timers were closed.
    expect(out.code, out.stderr).toBe(78);
    expect(out.stderr).toContain(`127.0.0.1:${port} is in use`);
    expect(out.stderr).toMatch(/--listen \/ BATON_LISTEN \/ listen in the config file/);
    expect(out.stdout).not.toMatch(/"msg":"baton serving"/);
  }, EXIT_MS + 30_000);

  it("an admin address in use (here from --admin-listen) exits 78 naming --admin-listen / BATON_ADMIN_LISTEN / adminListen", async () => {
    const cwd = tempDir();
    const port = await takenPort();
    const out = await baton(["serve", "--listen", "127.0.0.1:0", "--admin-listen", `127.0.0.1:${port}`, "--dev-certs"], cwd);
    expect(out.code, out.stderr).toBe(78);
    expect(out.stderr).toContain(`127.0.0.1:${port} is in use`);
    expect(out.stderr).toMatch(/--admin-listen \/ BATON_ADMIN_LISTEN \/ adminListen in the config file/);
  }, EXIT_MS + 30_000);

  it("a --trust-domain other than the certificates' exits 78 naming both domains and the setting", async () => {
    const cwd = tempDir();
    await ensureDevelopmentCertificates({ dir: join(cwd, "certs"), trustDomain: "other.example" });
    const out = await baton(["serve", "--listen", "127.0.0.1:0", "--trust-domain", "baton.local"], cwd, { BATON_ADMIN_LISTEN: "127.0.0.1:0", BATON_STORE: "memory" });
    expect(out.code, out.stderr).toBe(78);
    expect(out.stderr).toContain("other.example");
    expect(out.stderr).toContain("baton.local");
    expect(out.stderr).toMatch(/--trust-domain \/ BATON_TRUST_DOMAIN \/ tls\.trustDomain in the config file/);
    expect(out.stdout).not.toMatch(/"msg":"baton serving"/);
  }, EXIT_MS + 30_000);
});

describe("baton serve: BATON_ADMIN_LISTEN=\"\" turns the admin endpoint off", () => {
  const procs: BatonProcess[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) await p.stop("SIGKILL");
  });

  it("serves gRPC with no admin port: the process listens on the gRPC port only", async () => {
    const cwd = tempDir();
    const p = startBaton(["serve", "--listen", "127.0.0.1:0", "--dev-certs"], { cwd, env: { BATON_ADMIN_LISTEN: "" } });
    procs.push(p);
    const serving = await p.waitForLine((l) => l.msg === "baton serving", EXIT_MS);
    const port = Number(String(serving.listen).split(":").pop());
    expect(p.lines.some((l) => l.msg === "admin endpoint serving /metrics")).toBe(false);
    expect(listeningPorts(p.child.pid!)).toEqual([port]);
    expect(await p.stop("SIGTERM")).toBe(0);
  }, EXIT_MS + 30_000);
});
