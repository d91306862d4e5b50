// Agent processes: each one (bench/agent-host.ts) hosts many SDK agents (createAgent), each
// with its own certificate and connection, so 1,000-10,000 agents fit on one machine. The
// parent talks to them over IPC; CPU and memory come from /proc (lib/usage.ts).
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { ROOT, TSX } from "../../test/helpers/process.js";
import type { BenchPki } from "./pki.js";
import { spawnChild } from "./children.js";

/** What the agents do with directives. */
export type AgentMode =
  /** Accept, then complete at once (an empty result). */
  | "complete"
  /** Accept and keep running until `release()`, then complete. */
  | "hold"
  /** Accept, then report progress as fast as the stream takes it until `release()`, then complete. */
  | "progress";

/** Parent -> agent process. */
export type HostCommand =
  | { type: "start"; address: string; caFile: string; agentKey: string; agentCerts: string; first: number; count: number; mode: AgentMode; maxInFlight: number; concurrency: number; deadline: number }
  | { type: "release" }
  | { type: "stats" }
  | { type: "stop" };

/** Counters of one agent process. */
export interface HostStats {
  connected: number;
  /** Directives accepted (DirectiveAck ACCEPTED sent). */
  accepted: number;
  completed: number;
  held: number;
  /** Progress updates taken off the SDK's outbox onto the stream. */
  progressSent: number;
  lost: number;
  /** Completions sent and not yet acknowledged by the coordinator (acknowledged = durable). */
  unacked: number;
}

/** Agent process -> parent. */
export type HostReport =
  | { type: "hello" }
  | { type: "connected"; connected: number }
  | { type: "accepted"; accepted: number }
  | { type: "connect-done"; connected: number; failed: number; lastError: string }
  | { type: "lost"; agentId: string; code: string; message: string }
  | ({ type: "stats" } & HostStats)
  | { type: "stopped" }
  | { type: "error"; message: string };

/** Options of startFleet. */
export interface FleetOptions {
  pki: BenchPki;
  address: string;
  mode: AgentMode;
  /** Directives each agent takes at once. Default 16. */
  maxInFlight?: number;
  /** Agents per process. Default 500. */
  perHost?: number;
  /** Connects in progress at once, over all processes. Default 64. */
  concurrency?: number;
}

interface Host {
  child: ChildProcess;
  connected: number;
  accepted: number;
  stats?: (s: HostStats) => void;
  stopped?: () => void;
}

/** A set of agent processes that grows with add(). */
export class Fleet {
  private readonly hosts: Host[] = [];
  private next = 0;
  /** Session ends seen while the fleet ran (each is a lost session the SDK then resumes). */
  readonly lost: Array<{ agentId: string; code: string; message: string }> = [];
  /** Errors the agent processes reported (a run with any is not to be trusted). */
  readonly errors: string[] = [];
  private readonly acceptWaiters = new Set<() => void>();

  constructor(private readonly options: FleetOptions) {}

  /** Process ids of the agent processes. */
  get pids(): number[] {
    return this.hosts.map((h) => h.child.pid!);
  }

  /** Agents connected now (first Welcome received). */
  get connected(): number {
    return this.hosts.reduce((n, h) => n + h.connected, 0);
  }

  /** Lost sessions by reason (agent names and figures folded), e.g. "469 x UNAVAILABLE: Connection dropped". */
  lostSummary(): string[] {
    const reasons = new Map<string, number>();
    for (const l of this.lost) {
      const reason = `${l.code}: ${l.message}`.replace(/bench-agent-\d+/g, "<agent>").replace(/\d+ ms/g, "<n> ms");
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    }
    return [...reasons].sort((a, b) => b[1] - a[1]).map(([reason, n]) => `${n} x ${reason}`);
  }

  /** Directives the agents have accepted so far (their acks sent). */
  get accepted(): number {
    return this.hosts.reduce((n, h) => n + h.accepted, 0);
  }

  /** Resolves true once the agents have accepted `n` directives in all, false at `deadline` (Date.now() ms). */
  whenAccepted(n: number, deadline: number): Promise<boolean> {
    if (this.accepted >= n) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => (clearTimeout(timer), this.acceptWaiters.delete(check), resolve(ok));
      const check = () => this.accepted >= n && done(true);
      const timer = setTimeout(() => done(this.accepted >= n), Math.max(0, deadline - Date.now()));
      this.acceptWaiters.add(check);
    });
  }

  /** Agents asked for so far. */
  get size(): number {
    return this.next;
  }

  /**
   * Starts `count` more agents (names continue from the last) and resolves when each has
   * connected or `timeoutMs` has passed: { connected (all of the fleet), seconds, failed, lastError }.
   * `onConnecting` runs once the new processes have started and loaded their code, just as
   * the agents start connecting: where a measurement of the connecting alone begins.
   */
  async add(count: number, timeoutMs: number, onConnecting?: () => void): Promise<{ connected: number; seconds: number; failed: number; lastError: string }> {
    const perHost = this.options.perHost ?? 500;
    const first = this.next;
    if (first + count > this.options.pki.agents) throw new Error(`the bench PKI has ${this.options.pki.agents} agent certificates, ${first + count} are needed`);
    this.next += count;
    const shares: Array<[number, number]> = [];
    for (let i = first; i < first + count; i += perHost) shares.push([i, Math.min(perHost, first + count - i)]);
    const concurrency = Math.max(2, Math.ceil((this.options.concurrency ?? 64) / shares.length));
    // Processes start (and load their code) first, so the time is the agents' connecting alone.
    const hosts = await Promise.all(shares.map(() => this.spawnHost()));
    onConnecting?.();
    const started = performance.now();
    const deadline = Date.now() + timeoutMs;
    const results = await Promise.all(hosts.map((h, i) => h.start(shares[i]![0], shares[i]![1], concurrency, deadline)));
    return {
      connected: this.connected,
      seconds: (performance.now() - started) / 1000,
      failed: results.reduce((s, r) => s + r.failed, 0),
      lastError: results.map((r) => r.lastError).filter(Boolean).at(-1) ?? "",
    };
  }

  /** Held directives complete (hold and progress modes). */
  release(): void {
    for (const h of this.hosts) h.child.send({ type: "release" } satisfies HostCommand);
  }

  /** Counters summed over the processes. */
  async stats(): Promise<HostStats> {
    const all = await Promise.all(this.hosts.map((h) => new Promise<HostStats>((resolve) => ((h.stats = resolve), h.child.send({ type: "stats" } satisfies HostCommand)))));
    const sum: HostStats = { connected: 0, accepted: 0, completed: 0, held: 0, progressSent: 0, lost: 0, unacked: 0 };
    for (const s of all) for (const k of Object.keys(sum) as Array<keyof HostStats>) sum[k] += s[k];
    return sum;
  }

  /** Resolves true once `n` directives are completed and acknowledged by the coordinator (durable), false at `deadline` (Date.now() ms); checks every 250 ms. */
  async whenCompleted(n: number, deadline: number): Promise<boolean> {
    for (; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
      const s = await this.stats();
      if (s.completed - s.unacked >= n) return true;
    }
    return false;
  }

  /** Resolves true once every completion sent is acknowledged (durable), false after `timeoutMs`; checks every 250 ms. */
  async whenSettled(timeoutMs: number): Promise<boolean> {
    for (const until = Date.now() + timeoutMs; Date.now() < until; await new Promise((r) => setTimeout(r, 250))) {
      if ((await this.stats()).unacked === 0) return true;
    }
    return false;
  }

  /** Closes every agent, then ends the processes (killed if they do not exit in `graceMs`). */
  async stop(graceMs = 15_000): Promise<void> {
    await Promise.all(
      this.hosts.map(async (h) => {
        if (h.child.exitCode !== null || h.child.signalCode !== null) return;
        const exited = once(h.child, "exit");
        const timer = setTimeout(() => h.child.kill("SIGKILL"), graceMs);
        h.child.send({ type: "stop" } satisfies HostCommand);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  /** Starts an agent process; resolves once it is ready for its agents. */
  private async spawnHost(): Promise<{ start(first: number, count: number, concurrency: number, deadline: number): Promise<{ failed: number; lastError: string }> }> {
    const child = spawnChild(process.execPath, [...(process.env.BENCH_PROFILE_AGENTS ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_PROFILE_AGENTS] : []), "--import", TSX, join(ROOT, "bench/agent-host.ts")], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const host: Host = { child, connected: 0, accepted: 0 };
    this.hosts.push(host);
    const { pki, address, mode } = this.options;
    let connected: ((r: { failed: number; lastError: string }) => void) | undefined;
    let failed: ((err: Error) => void) | undefined;
    const ready = new Promise<void>((resolve, reject) => {
      failed = reject;
      child.on("exit", (code, signal) => {
        if (!host.stopped && code !== 0) failed?.(new Error(`agent process ${child.pid} exited (${code ?? signal}) while starting or connecting`));
        host.stopped?.();
      });
      child.on("message", (m: HostReport) => {
        switch (m.type) {
          case "hello":
            resolve();
            return;
          case "connected":
            host.connected = m.connected;
            return;
          case "accepted":
            host.accepted = m.accepted;
            for (const w of [...this.acceptWaiters]) w();
            return;
          case "connect-done":
            host.connected = m.connected;
            connected?.({ failed: m.failed, lastError: m.lastError });
            return;
          case "lost":
            this.lost.push({ agentId: m.agentId, code: m.code, message: m.message });
            return;
          case "stats":
            host.stats?.(m);
            return;
          case "stopped":
            host.stopped = () => {};
            return;
          case "error":
            this.errors.push(m.message);
            process.stderr.write(`agent process ${child.pid}: ${m.message}\n`);
            return;
        }
      });
    });
    await ready;
    return {
      start: (first, count, concurrency, deadline) =>
        new Promise((resolve, reject) => {
          connected = resolve;
          failed = reject;
          child.send({ type: "start", address, caFile: pki.caFile, agentKey: pki.agentKey, agentCerts: pki.agentCerts, first, count, mode, maxInFlight: this.options.maxInFlight ?? 16, concurrency, deadline } satisfies HostCommand);
        }),
    };
  }
}
