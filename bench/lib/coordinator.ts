// Starts the coordinator as a user would: the built package (`npm start` runs dist/), as
// `node dist/src/main.js serve --config <file>` in its own process, on 127.0.0.1 with a free
// port, a fresh SQLite journal (synchronous FULL, the default), mTLS with the bench PKI and
// message signing on (the default). Its logs (pino, default level) go to a file in its temp
// folder. dist/ is compiled from the sources once per bench process first, so it is never
// stale: tsx's own cost (its loader, esbuild's keepNames: ~58 MB and ~8 KB an agent) is not
// in the figures, since no user runs the coordinator through it.
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, watch, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { ROOT } from "../../test/helpers/process.js";
import type { BenchPki } from "./pki.js";
import { spawnChild } from "./children.js";

let built = false;

/** Compiles src/ and gen/ into dist/ (`tsc -p tsconfig.build.json`, what `npm run build` does but the dashboard), once per process. */
function buildOnce(): void {
  if (built) return;
  execFileSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tsconfig.build.json")], { cwd: ROOT, stdio: "inherit" });
  built = true;
}

/** A running coordinator process. */
export interface CoordinatorProcess {
  pid: number;
  /** "localhost:<port>": dial localhost, the certificate names it. */
  address: string;
  /** http://127.0.0.1:<port>/metrics */
  metricsUrl: string;
  /** Prometheus text of /metrics. */
  metrics(): Promise<string>;
  /** Its log file (pino JSON lines), removed by stop(). */
  logFile: string;
  /** The last error lines of its log (level error or worse), for a failed run's message. */
  errors(max?: number): string[];
  /** SIGTERM (graceful shutdown), SIGKILL if it has not exited in `graceMs`; removes its temp folder. */
  stop(graceMs?: number): Promise<void>;
}

/** Options of startCoordinator. */
export interface CoordinatorOptions {
  pki: BenchPki;
  /** Config file fields on top of the bench's (defaults otherwise). */
  config?: Record<string, unknown>;
  /** Write a CPU profile (node --cpu-prof) into this folder when the process exits. */
  profileDir?: string;
  /** How long to wait for "baton serving", ms. */
  startTimeoutMs?: number;
}

interface Ready {
  listen?: string;
  admin?: string;
}

function lastBytes(path: string, n: number): string {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const buf = Buffer.alloc(Math.min(n, size));
    readSync(fd, buf, 0, buf.length, size - buf.length);
    return buf.toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** Starts a coordinator and resolves once it serves gRPC and /metrics. */
export async function startCoordinator(options: CoordinatorOptions): Promise<CoordinatorProcess> {
  const { pki } = options;
  const dir = mkdtempSync(join(tmpdir(), "baton-bench-coordinator-"));
  const configFile = join(dir, "baton.json");
  // The journal's key for sealed input at rest, where the coordinator looks for it by default (<certsDir>/journal.key).
  writeFileSync(join(dir, "journal.key"), `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
  writeFileSync(
    configFile,
    JSON.stringify({
      listen: "127.0.0.1:0",
      adminListen: "127.0.0.1:0",
      tls: { trustDomain: pki.trustDomain, certsDir: dir, caFile: pki.caFile, certFile: pki.coordinatorCert, keyFile: pki.coordinatorKey, revokedFile: join(dir, "revoked.json") },
      store: { kind: "sqlite", dataDir: join(dir, "data") },
      ...options.config,
      // Another journal for a comparison run (docs/scaling.md: the etcd journal), JSON of config fields.
      ...(process.env.BENCH_COORDINATOR_CONFIG ? (JSON.parse(process.env.BENCH_COORDINATOR_CONFIG) as Record<string, unknown>) : {}),
    }),
  );
  const logFile = join(dir, "coordinator.log");
  const fd = openSync(logFile, "a");
  // BENCH_HEAP_SNAPSHOT (bench/idle-probe.ts): SIGUSR2 writes a heap snapshot. BENCH_NODE_FLAGS:
  // node flags of the coordinator for a probe (--trace-opt, --trace-gc), space-separated.
  const profile = [...(options.profileDir ? ["--cpu-prof", "--cpu-prof-dir", options.profileDir] : []), ...(process.env.BENCH_HEAP_SNAPSHOT ? ["--heapsnapshot-signal=SIGUSR2"] : []), ...(process.env.BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? [])];
  buildOnce();
  const child = spawnChild(process.execPath, [...profile, join(ROOT, "dist/src/main.js"), "serve", "--config", configFile], { cwd: dir, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const tail = () => lastBytes(logFile, 8192).split("\n").slice(-8).join("\n");
  const ready = await new Promise<Ready>((resolve, reject) => {
    const found: Ready = {};
    let offset = 0;
    let settled = false;
    const check = () => {
      const text = readFileSync(logFile, "utf8");
      const lines = text.slice(offset, text.lastIndexOf("\n") + 1);
      offset += lines.length;
      for (const line of lines.split("\n")) {
        if (!line.startsWith("{")) continue;
        const entry = JSON.parse(line) as { msg?: string; listen?: string; admin?: string };
        if (entry.msg === "baton serving") found.listen = entry.listen;
        if (entry.msg === "admin endpoint serving /metrics") found.admin = entry.admin;
      }
      if (found.listen && found.admin) done(() => resolve(found));
    };
    const watcher = watch(logFile, check);
    const timer = setTimeout(() => done(() => reject(new Error(`the coordinator did not log "baton serving" within ${options.startTimeoutMs ?? 60_000} ms:\n${tail()}`))), options.startTimeoutMs ?? 60_000);
    void exited.then(([code, signal]) => done(() => reject(new Error(`the coordinator exited (${code ?? signal}) before serving:\n${tail()}`))));
    function done(fn: () => void): void {
      if (settled) return;
      settled = true;
      watcher.close();
      clearTimeout(timer);
      fn();
    }
    check();
  });
  const port = ready.listen!.split(":").at(-1)!;
  const metricsUrl = `http://${ready.admin}/metrics`;
  let stopped: Promise<void> | undefined;
  return {
    pid: child.pid!,
    address: `localhost:${port}`,
    logFile,
    metricsUrl,
    async metrics() {
      const res = await fetch(metricsUrl);
      return res.text();
    },
    errors(max = 5) {
      // The log of a busy run is hundreds of MB: its end says what went wrong.
      const lines = lastBytes(logFile, 1 << 20).split("\n").filter((l) => /"level":(40|50|60|"warn"|"error"|"fatal")/.test(l));
      return lines.slice(-max);
    },
    stop(graceMs = 20_000) {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
