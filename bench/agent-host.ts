// An agent process of the bench: hosts many SDK agents, driven over IPC by bench/lib/agents.ts.
//   (started by the bench: node --import tsx bench/agent-host.ts)
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { createAgent, type BatonAgent, type ReceivedDirective } from "../src/agent/index.js";
import { createLogger } from "../src/logging.js";
import { Code } from "../src/errors.js";
import { clientCredentials } from "../src/rpc/index.js";
import type { HostCommand, HostReport, HostStats } from "./lib/agents.js";
import { agentName } from "./lib/pki.js";

const send = (m: HostReport) => process.send?.(m);
const agents: BatonAgent[] = [];
const held: ReceivedDirective[] = [];
const pumping: Array<{ agent: BatonAgent; directive: ReceivedDirective }> = [];
const stats: HostStats = { connected: 0, accepted: 0, completed: 0, held: 0, progressSent: 0, lost: 0, unacked: 0 };
let stopping = false;
// Quiet agents: a thousand reconnect warnings would drown the bench's table.
const logger = createLogger({ level: "error" });

// The SDK shows no backlog figure; the bench reads its outbox so progress is made only as
// fast as the stream drains it (HTTP/2 flow control), rather than overflowing the queue.
const backlog = (agent: BatonAgent): number | undefined => (agent as unknown as { outbox?: { size: number } }).outbox?.size;
const PROGRESS_BATCH = 64;

// One host runs hundreds of agents: a pass over all of them at once held its event loop
// for up to a second (monitorEventLoopDelay), delaying its own agents' heartbeats and
// keepalive answers, a load the coordinator is not to blame for. A pass is cut into slices
// of a few milliseconds, round robin (the loop still lags 200-500 ms at 450 reporting
// agents a host: the SDK's own work per stream).
const PUMP_SLICE_MS = 5;
let cursor = 0;

function pump(): void {
  if (stopping || pumping.length === 0) return;
  const until = performance.now() + PUMP_SLICE_MS;
  for (let n = 0; n < pumping.length && performance.now() < until; n++) {
    cursor = (cursor + 1) % pumping.length;
    const p = pumping[cursor]!;
    const queued = backlog(p.agent);
    if (queued === undefined || queued >= PROGRESS_BATCH) continue;
    for (let i = 0; i < PROGRESS_BATCH; i++) p.directive.progress((stats.progressSent + i) % 100);
    stats.progressSent += PROGRESS_BATCH;
  }
  setImmediate(pump);
}

function release(): void {
  for (const d of held.splice(0)) d.complete({});
  for (const p of pumping.splice(0)) {
    // What is still queued never reached the stream.
    stats.progressSent -= backlog(p.agent) ?? 0;
    p.directive.complete({});
  }
  stats.held = 0;
}

// One IPC message per burst of accepts, not one per directive.
let acceptReport = false;
function accepted(): void {
  stats.accepted++;
  if (acceptReport) return;
  acceptReport = true;
  setImmediate(() => ((acceptReport = false), send({ type: "accepted", accepted: stats.accepted })));
}

async function serve(agent: BatonAgent, mode: Extract<HostCommand, { type: "start" }>["mode"]): Promise<void> {
  for await (const d of agent.directives()) {
    d.accept();
    accepted();
    if (mode === "complete") {
      d.complete({});
      stats.completed++;
    } else if (mode === "hold") {
      held.push(d);
      stats.held++;
    } else {
      if (!("outbox" in agent)) {
        send({ type: "error", message: "the SDK's BatonAgent has no outbox any more: bench/agent-host.ts cannot pace progress by it (update backlog())" });
        return;
      }
      pumping.push({ agent, directive: d });
      if (pumping.length === 1) setImmediate(pump);
    }
  }
}

async function start(cmd: Extract<HostCommand, { type: "start" }>): Promise<void> {
  const ca = readFileSync(cmd.caFile);
  const key = readFileSync(cmd.agentKey);
  const certs = (JSON.parse(readFileSync(cmd.agentCerts, "utf8")) as string[]).slice(cmd.first, cmd.first + cmd.count);
  let nextIndex = 0;
  let failed = 0;
  let lastError = "";
  let reported = false;
  const report = () => {
    if (reported) return;
    reported = true;
    // One IPC message per burst of connects, not one per agent.
    setImmediate(() => ((reported = false), send({ type: "connected", connected: stats.connected })));
  };
  const worker = async () => {
    while (!stopping && nextIndex < certs.length) {
      const i = nextIndex++;
      const agentId = agentName(cmd.first + i);
      for (;;) {
        const agent = createAgent({ address: cmd.address, agentId, credentials: clientCredentials({ ca, cert: certs[i]!, key }), maxInFlight: cmd.maxInFlight, logger, requireMessageSecurity: true });
        try {
          await agent.connect();
        } catch (err) {
          failed++;
          lastError = `${agentId}: ${(err as Error).message}`;
          if (stopping || Date.now() > cmd.deadline) break;
          await sleep(250);
          continue;
        }
        agents.push(agent);
        stats.connected++;
        agent.on("disconnected", (end) => {
          if (stopping) return;
          stats.lost++;
          send({ type: "lost", agentId, code: Code[end.code] ?? String(end.code), message: end.message });
        });
        void serve(agent, cmd.mode);
        report();
        break;
      }
      if (Date.now() > cmd.deadline) break;
    }
  };
  await Promise.all(Array.from({ length: Math.min(cmd.concurrency, certs.length) }, worker));
  send({ type: "connect-done", connected: stats.connected, failed, lastError });
}

async function stop(): Promise<void> {
  stopping = true;
  await Promise.all(agents.map((a) => a.close({ flushMs: 500 })));
  send({ type: "stopped" });
  process.disconnect();
}

process.on("message", (cmd: HostCommand) => {
  if (cmd.type === "start") void start(cmd).catch((err: Error) => send({ type: "error", message: err.stack ?? err.message }));
  else if (cmd.type === "release") release();
  else if (cmd.type === "stats") {
    const queued = pumping.reduce((n, p) => n + (backlog(p.agent) ?? 0), 0);
    send({ type: "stats", ...stats, progressSent: stats.progressSent - queued, unacked: agents.reduce((n, a) => n + a.unacknowledgedCompletions, 0) });
  }
  else if (cmd.type === "stop") void stop();
});
process.on("unhandledRejection", (err) => send({ type: "error", message: `unhandled rejection: ${(err as Error)?.stack ?? String(err)}` }));
send({ type: "hello" });
