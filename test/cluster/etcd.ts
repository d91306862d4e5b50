import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll } from "vitest";
import { freePort } from "../helpers/process.js";

/** The flags baton needs of etcd beyond its defaults: a journal batch is one Txn. */
export const ETCD_FLAGS = ["--max-txn-ops=10000", "--max-request-bytes=33554432"];
/** What the stores and coordinators under test are told etcd allows. */
export const ETCD_MAX_TXN_OPS = 10_000;

/** A real etcd process (or several, one cluster) on loopback, with a temp data dir. */
export interface EtcdCluster {
  /** Client endpoints, "127.0.0.1:port". */
  endpoints: string[];
  members: Array<{ name: string; child: ChildProcess; endpoint: string }>;
  /** SIGKILLs member i and starts it again on the same ports and data; resolves once it is healthy. */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

/** PEM files for etcd's client port: its certificate (for localhost) and the CA client certificates must chain to. */
export interface EtcdTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/**
 * Starts `size` etcd members on free loopback ports; resolves once each serves clients.
 * With `tls`, clients must connect over TLS to "localhost:<port>" with a certificate from
 * the CA (--client-cert-auth); /health is then on a plaintext metrics port.
 */
export async function startEtcd(size = 1, options: { tls?: EtcdTls } = {}): Promise<EtcdCluster> {
  // The ports are free when chosen, but another process (a parallel test file) may take
  // one before etcd binds it: then etcd exits at once, and the cluster starts again on new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startEtcdOnce(size, options);
    } catch (err) {
      if (attempt >= 5 || !/address already in use/.test((err as Error).message)) throw err;
    }
  }
}

async function startEtcdOnce(size: number, options: { tls?: EtcdTls }): Promise<EtcdCluster> {
  const dir = mkdtempSync(join(tmpdir(), "baton-etcd-"));
  const { tls } = options;
  const specs = [];
  for (let i = 0; i < size; i++) specs.push({ name: `m${i}`, client: await freePort(), peer: await freePort(), metrics: await freePort() });
  const initial = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peer}`).join(",");
  const members = specs.map((s) => {
    const args = [
      `--name=${s.name}`,
      `--data-dir=${join(dir, s.name)}`,
      `--listen-client-urls=${tls ? "https" : "http"}://127.0.0.1:${s.client}`,
      `--advertise-client-urls=${tls ? "https://localhost" : "http://127.0.0.1"}:${s.client}`,
      `--listen-metrics-urls=http://127.0.0.1:${s.metrics}`,
      ...(tls ? [`--cert-file=${tls.certFile}`, `--key-file=${tls.keyFile}`, `--trusted-ca-file=${tls.caFile}`, "--client-cert-auth"] : []),
      `--listen-peer-urls=http://127.0.0.1:${s.peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${s.peer}`,
      `--initial-cluster=${initial}`,
      "--initial-cluster-state=new",
      "--initial-cluster-token=baton-test",
      "--log-level=warn",
      "--logger=zap",
      ...ETCD_FLAGS,
    ];
    const child = spawn("etcd", args, { stdio: ["ignore", "ignore", "pipe"] });
    return { name: s.name, args, child, endpoint: `${tls ? "localhost" : "127.0.0.1"}:${s.client}`, health: `127.0.0.1:${s.metrics}`, stderr: "" };
  });
  const capture = (m: (typeof members)[number]) => m.child.stderr!.on("data", (d: Buffer) => (m.stderr += d.toString()));
  for (const m of members) capture(m);
  const cluster: EtcdCluster = {
    endpoints: members.map((m) => m.endpoint),
    members,
    async restart(i) {
      const m = members[i]!;
      if (m.child.exitCode === null && m.child.signalCode === null) {
        const exited = once(m.child, "exit");
        m.child.kill("SIGKILL");
        await exited;
      }
      m.child = spawn("etcd", m.args, { stdio: ["ignore", "ignore", "pipe"] });
      capture(m);
      await waitHealthy(m.health, () => m.stderr, m.child);
    },
    async stop() {
      await Promise.all(members.map(async (m) => {
        if (m.child.exitCode !== null || m.child.signalCode !== null) return;
        const exited = once(m.child, "exit");
        m.child.kill("SIGCONT");
        m.child.kill("SIGKILL");
        await exited;
      }));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(members.map((m) => waitHealthy(m.health, () => m.stderr, m.child)));
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

// etcd's /health answers {"health":"true"} once the member has a leader and serves.
async function waitHealthy(endpoint: string, stderr: () => string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) {
      // Its last words may still be in the pipe when the exit is seen: read them first (startEtcd looks for "address already in use").
      if (child.stderr && !child.stderr.readableEnded) await Promise.race([once(child.stderr, "end"), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
      throw new Error(`etcd at ${endpoint} exited with ${child.exitCode}: ${stderr()}`);
    }
    try {
      const res = await fetch(`http://${endpoint}/health`);
      if (res.ok && ((await res.json()) as { health?: string }).health === "true") return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`etcd at ${endpoint} not healthy within 60 s (waited for /health): ${stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** One etcd member for a test file and a client on it: started before its tests, stopped after; `onStarted` receives both. */
export function useEtcd(onStarted: (started: { etcd: EtcdCluster; client: Etcd3 }) => void): void {
  let started: { etcd: EtcdCluster; client: Etcd3 } | undefined;
  beforeAll(async () => {
    const etcd = await startEtcd();
    started = { etcd, client: new Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) }) };
    onStarted(started);
  }, 90_000);
  afterAll(async () => {
    started?.client.close();
    await started?.etcd.stop();
  });
}
