// A replica set for the tests: coordinators as child processes (`node --import tsx
// src/main.ts serve --config …`) on one etcd, agents as child processes that know every
// coordinator, and Control calls that follow the leader.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { Code, LEADER_TRAILER, toBatonError } from "../../src/errors.js";
import { clientCredentials, createChannel, createClient, type Channel, type ServiceClient } from "../../src/rpc/index.js";
import { ensureDevelopmentCertificates, issueToDirectory } from "../../src/security/index.js";
import { createJournalKeyFile } from "../../src/store/index.js";
import { ROOT, startBaton, TSX, type BatonProcess } from "../helpers/process.js";
import { ETCD_MAX_TXN_OPS } from "./etcd.js";

const LEADING = "leading: journal loaded from etcd; serving agents and Control";

/** The lease TTL the tests run with, seconds. */
export const LEASE_TTL_S = 2;

export interface Replica {
  name: string;
  proc: BatonProcess;
  address: string;
}

export interface ReplicaSet {
  work: string;
  certs: string;
  replicas: Replica[];
  addresses: string[];
  /** The replica that logged "leading" (at or after `since` lines of each), waited for. */
  waitForLeader(options?: { except?: Replica; timeoutMs?: number }): Promise<Replica>;
  startAgents(count: number): Promise<void>;
  /** Every effect line the agents wrote. */
  effects(): Array<{ directive: string; task: string; pid: number }>;
  /** A Control call on the leader: a follower's baton-leader trailer is followed, a dead address skipped. */
  control<T>(call: (c: ServiceClient<typeof Control>) => Promise<T>, deadlineMs?: number): Promise<T>;
  /** A Control client on one replica only. */
  controlOn(replica: Replica): { client: ServiceClient<typeof Control>; close(): void };
  stop(): Promise<void>;
}

/** Starts `count` coordinators on the etcd at `endpoints`; resolves once each serves. */
export async function startReplicaSet(endpoints: string[], count = 3): Promise<ReplicaSet> {
  const work = mkdtempSync(join(tmpdir(), "baton-replicas-"));
  const certs = join(work, "certs");
  const trustDomain = "baton.local";
  await ensureDevelopmentCertificates({ dir: certs, trustDomain });
  createJournalKeyFile(join(certs, "journal.key"));
  mkdirSync(join(work, "effects"));
  const replicas: Replica[] = [];
  const agents: ChildProcess[] = [];
  const effectFiles: string[] = [];
  let finished = false;
  const tls = { ca: readFileSync(join(certs, "ca.pem")), cert: readFileSync(join(certs, "operator.pem")), key: readFileSync(join(certs, "operator.key")) };
  const channels = new Map<string, Channel>();
  const clientAt = (address: string) => {
    let ch = channels.get(address);
    if (!ch) channels.set(address, (ch = createChannel(address, clientCredentials(tls))));
    return createClient(Control, ch);
  };
  let current = "";
  const set: ReplicaSet = {
    work,
    certs,
    replicas,
    addresses: [],
    async waitForLeader({ except, timeoutMs = 60_000 } = {}) {
      const candidates = replicas.filter((r) => r !== except && r.proc.child.exitCode === null && r.proc.child.signalCode === null);
      // Without `except`, a leader elected already counts; with it, only a new term.
      const leads = (r: Replica) => r.proc.lines.filter((l) => l.msg === LEADING).length;
      const seen = new Map(candidates.map((r) => [r, except ? leads(r) : 0]));
      return Promise.any(candidates.map((r) => r.proc.waitForLine(() => leads(r) > seen.get(r)!, timeoutMs).then(() => r)));
    },
    async startAgents(n) {
      for (let i = 1; i <= n; i++) {
        const id = `agent-${i}`;
        await issueToDirectory({ dir: certs, trustDomain, role: "managed_agent", name: id });
        const effects = join(work, "effects", `${id}.jsonl`);
        effectFiles.push(effects);
        const spawnAgent = () => {
          const child = spawn(process.execPath, ["--import", TSX, `${ROOT}test/cluster/agent-child.ts`, set.addresses.join(","), id, certs, effects], { stdio: ["ignore", "ignore", "ignore"] });
          agents.push(child);
          // An agent whose session ended for good is started again, as a supervisor would.
          child.once("exit", () => {
            if (!finished) setTimeout(() => !finished && spawnAgent(), 200);
          });
        };
        spawnAgent();
      }
    },
    effects() {
      const out: Array<{ directive: string; task: string; pid: number }> = [];
      for (const f of effectFiles) {
        if (!existsSync(f)) continue;
        for (const line of readFileSync(f, "utf8").split("\n")) if (line) out.push(JSON.parse(line) as { directive: string; task: string; pid: number });
      }
      return out;
    },
    async control(call, deadlineMs = 5000) {
      let lastErr: unknown;
      // Bounded in time: a failover takes the lease TTL and a journal load.
      const until = Date.now() + 60_000;
      for (let attempt = 0; Date.now() < until; attempt++) {
        current ||= set.addresses[0]!;
        try {
          return await call(clientAt(current));
        } catch (err) {
          lastErr = err;
          const e = toBatonError(err);
          if (e.code !== Code.UNAVAILABLE && e.code !== Code.DEADLINE_EXCEEDED && e.code !== Code.CANCELLED) throw err;
          const leader = e.trailers[LEADER_TRAILER];
          current = leader && leader !== current ? leader : set.addresses[(set.addresses.indexOf(current) + 1) % set.addresses.length]!;
          await new Promise((r) => setTimeout(r, Math.min(deadlineMs, 500, 50 * attempt)));
        }
      }
      throw lastErr;
    },
    controlOn(replica) {
      const ch = createChannel(replica.address, clientCredentials(tls));
      return { client: createClient(Control, ch), close: () => ch.close() };
    },
    async stop() {
      finished = true;
      for (const ch of channels.values()) ch.close();
      await Promise.all(agents.map(killed));
      await Promise.all(replicas.map((r) => killed(r.proc.child)));
      rmSync(work, { recursive: true, force: true });
    },
  };
  try {
    for (let i = 1; i <= count; i++) {
      const name = `c${i}`;
      const file = join(work, `${name}.json`);
      writeFileSync(file, JSON.stringify({
        listen: "127.0.0.1:0",
        coordinatorId: `coordinator-${name}`,
        adminListen: "",
        tls: { certsDir: certs, trustDomain },
        session: { heartbeatIntervalMs: 300, heartbeatMisses: 3, ackTimeoutMs: 1500, disconnectGraceMs: 10_000 },
        delivery: { retryCount: 3, backoffInitialMs: 100, backoffMaxMs: 800, leaseMs: 8000 },
        breaker: { resetTimeoutMs: 1000 },
        tasks: { maxAttempts: 3, maxDeliveries: 50, retryDelayMs: 50 },
        store: { kind: "etcd", etcd: { endpoints, prefix: "replicas/", maxTxnOps: ETCD_MAX_TXN_OPS } },
        cluster: { leaseTtlSeconds: LEASE_TTL_S, recheckMs: 250 },
      }));
      const proc = startBaton(["serve", "--config", file, "--log-level", "info"], { cwd: work });
      const serving = await proc.waitForLine((l) => l.msg === "baton serving", 60_000);
      const port = String(serving.listen).split(":").at(-1)!;
      replicas.push({ name, proc, address: `localhost:${port}` });
    }
    set.addresses = replicas.map((r) => r.address);
  } catch (err) {
    await set.stop();
    throw err;
  }
  return set;
}

async function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGCONT");
  child.kill("SIGKILL");
  await exited;
}
