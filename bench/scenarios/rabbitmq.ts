// rabbitmq (peer): the spec's original design on Debian's rabbitmq-server, started and
// stopped here when it is installed: a durable topic exchange `coordination`, persistent
// messages, manual consumer acks, publisher confirms, Nagle off. The coordinator side
// (this process) publishes directives to 100 agents (another process) with 512
// unconfirmed in flight and takes their completions from its own durable queue.
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createConnection } from "node:net";
import { join } from "node:path";
import { connect, type ConfirmChannel } from "amqplib";
import { ROOT, TSX } from "../../test/helpers/process.js";
import { EXCHANGE, agentQueue, agentRoute, completionRoute, coordinatorQueue } from "../peers/rabbit-layout.js";
import { FigureSet, percentile, type ScenarioResult } from "../lib/results.js";
import type { BenchContext, Scenario } from "../lib/scenario.js";
import { measureRoles } from "../lib/usage.js";
import { spawnChild } from "../lib/children.js";

const AGENTS = 100;
const WINDOW = 512;
const PORT = 5672;
// Everything on the loopback: AMQP, Erlang distribution and epmd.
const ENV = { ...process.env, RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1", RABBITMQ_NODE_PORT: String(PORT), ERL_EPMD_ADDRESS: "127.0.0.1", RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}" };
const INSTALL = "apt-get install -y rabbitmq-server";
// About a directive's size: the spec's JSON example.
const DIRECTIVE = Buffer.from(JSON.stringify({ directive_id: randomUUID(), timestamp: new Date().toISOString(), action: "assign_task", target_agents: ["task_executor_1"], parameters: { task_id: "bench", input: { bench: true } } }));

const installed = () => spawnSync("sh", ["-c", "command -v rabbitmq-server"]).status === 0;
const ctl = (...args: string[]) => spawnSync("rabbitmqctl", args, { env: ENV, encoding: "utf8", timeout: 180_000 });

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port }, () => (s.destroy(), resolve(true)));
    s.on("error", () => resolve(false));
  });
}

/** Starts the broker unless one is running; returns its pid and how to stop what was started. */
async function startBroker(ctx: BenchContext): Promise<{ pid: number; stop: () => void; note?: string }> {
  if (await listening(PORT)) {
    const pid = Number(/"(\d+)"/.exec(ctl("eval", "os:getpid().").stdout)?.[1] ?? 0);
    return { pid, stop: () => {}, note: "used the RabbitMQ already running on 127.0.0.1:5672 (not started or stopped by the bench)" };
  }
  const epmdWasUp = await listening(4369);
  ctx.log("  starting rabbitmq-server (about 10-30 s)");
  const start = spawnSync("rabbitmq-server", ["-detached"], { env: ENV, encoding: "utf8", timeout: 60_000 });
  if (start.status !== 0) throw new Error(`rabbitmq-server -detached failed: ${start.stderr || start.stdout}`);
  const stop = () => {
    ctl("stop");
    if (!epmdWasUp) spawnSync("epmd", ["-kill"], { env: ENV });
  };
  // await_startup gives up at once while the new node has not yet registered with epmd.
  let ready = ctl("await_startup", "--timeout", "120");
  for (const until = Date.now() + 120_000; ready.status !== 0 && Date.now() < until; ) {
    await new Promise((r) => setTimeout(r, 1000));
    ready = ctl("await_startup", "--timeout", "120");
  }
  if (ready.status !== 0) {
    stop();
    throw new Error(`rabbitmqctl await_startup failed: ${ready.stderr || ready.stdout}`);
  }
  return { pid: Number(/"(\d+)"/.exec(ctl("eval", "os:getpid().").stdout)?.[1] ?? 0), stop };
}

interface Flow {
  /** Publishes one directive to agent i; resolves when RabbitMQ confirms it. */
  publish(i: number, id: string): Promise<void>;
  /** Completion arrival by directive id. */
  completed: Map<string, number>;
  waitCompletion(id: string): Promise<number>;
}

async function coordinatorSide(ch: ConfirmChannel, run: string): Promise<Flow> {
  await ch.assertExchange(EXCHANGE, "topic", { durable: true });
  const queue = coordinatorQueue(run);
  await ch.assertQueue(queue, { durable: true });
  await ch.bindQueue(queue, EXCHANGE, "coordinator.completion.#");
  await ch.prefetch(1000);
  const completed = new Map<string, number>();
  const waiters = new Map<string, (at: number) => void>();
  await ch.consume(queue, (msg) => {
    if (!msg) return;
    const id = msg.properties.messageId as string;
    const at = performance.now();
    completed.set(id, at);
    waiters.get(id)?.(at);
    waiters.delete(id);
    ch.ack(msg);
  }, { noAck: false });
  return {
    completed,
    publish: (i, id) =>
      new Promise((resolve, reject) => {
        ch.publish(EXCHANGE, `${agentRoute(i)}.directive`, DIRECTIVE, { persistent: true, messageId: id }, (err) => (err ? reject(err as Error) : resolve()));
      }),
    waitCompletion: (id) => new Promise((resolve) => (completed.has(id) ? resolve(completed.get(id)!) : waiters.set(id, resolve))),
  };
}

async function measureRun(ctx: BenchContext, figures: FigureSet, brokerPid: number, run: number): Promise<void> {
  const url = `amqp://guest:guest@127.0.0.1:${PORT}`;
  const tag = `${process.pid}-${run}`;
  const agents = spawnChild(process.execPath, ["--import", TSX, join(ROOT, "bench/peers/rabbit-agents.ts"), url, String(AGENTS), tag], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const conn = await connect(url, { noDelay: true });
  try {
    const ch = await conn.createConfirmChannel();
    const flow = await coordinatorSide(ch, tag);
    await once(agents, "message");
    // One at a time: directive published -> its completion back.
    const one: number[] = [];
    const t1 = performance.now();
    for (let i = 0; performance.now() - t1 < (ctx.smoke ? 500 : 3000); i++) {
      const id = `one-${i}`;
      const t = performance.now();
      await flow.publish(i % AGENTS, id);
      one.push((await flow.waitCompletion(id)) - t);
    }
    one.sort((a, b) => a - b);
    figures.add("rabbitmq.one_p50_ms", "directive -> completion p50, one at a time", "ms", percentile(one, 0.5));
    figures.add("rabbitmq.one_p99_ms", "directive -> completion p99, one at a time", "ms", percentile(one, 0.99));
    // A window of unconfirmed publishes, as baton's throughput case has of submits.
    const usage = measureRoles({ "rabbitmq-server": [brokerPid], "agent process": [agents.pid!], "driver (bench)": [process.pid] });
    const sentAt = new Map<string, number>();
    let confirmed = 0;
    let next = 0;
    const runMs = ctx.smoke ? 1000 : 8000;
    const t0 = performance.now();
    const base = flow.completed.size;
    await Promise.all(
      Array.from({ length: WINDOW }, async () => {
        while (performance.now() - t0 < runMs) {
          const id = `w-${next}`;
          sentAt.set(id, performance.now());
          await flow.publish(next++ % AGENTS, id);
          confirmed++;
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const done = flow.completed.size - base;
    usage.finish(figures, "rabbitmq", `, ${WINDOW} in flight`);
    const latencies = [...sentAt].map(([id, at]) => (flow.completed.get(id) ?? Number.NaN) - at).filter(Number.isFinite).sort((a, b) => a - b);
    figures.add("rabbitmq.confirmed_publish_per_s", `confirmed publishes/s, ${WINDOW} in flight`, "msg/s", confirmed / seconds);
    figures.add("rabbitmq.end_to_end_per_s", `directive -> completion round trips/s, ${AGENTS} agents`, "msg/s", done / seconds);
    figures.add("rabbitmq.window_p50_ms", `directive -> completion p50 under load`, "ms", percentile(latencies, 0.5));
    for (let i = 0; i < AGENTS; i++) await ch.deleteQueue(agentQueue(tag, i));
    await ch.deleteQueue(coordinatorQueue(tag));
  } finally {
    agents.send("stop");
    await once(agents, "exit");
    await conn.close().catch(() => {});
  }
}

/** The RabbitMQ peer. */
export const rabbitmq: Scenario = {
  name: "rabbitmq",
  peer: true,
  description: "peer: the spec's design on RabbitMQ (topic exchange, persistent, manual acks, publisher confirms, noDelay)",
  agents: () => 1,
  async run(ctx): Promise<ScenarioResult> {
    const figures = new FigureSet();
    const notes: string[] = [];
    if (!installed()) {
      ctx.log(`  rabbitmq-server is not installed: skipped (install it with \`${INSTALL}\`)`);
      figures.text("rabbitmq.confirmed_publish_per_s", "confirmed publishes/s", `n/a: rabbitmq-server not installed (${INSTALL})`);
      return { scenario: "rabbitmq", figures: figures.list(), notes: [`skipped: rabbitmq-server is not installed; \`${INSTALL}\``], skipped: true };
    }
    const broker = await startBroker(ctx);
    if (broker.note) notes.push(broker.note);
    const version = /RabbitMQ version: (\S+)/.exec(ctl("status").stdout)?.[1];
    if (version) notes.push(`RabbitMQ ${version}, amqplib, ${AGENTS} agent connections`);
    try {
      for (let run = 0; run < ctx.runs; run++) await measureRun(ctx, figures, broker.pid, run);
    } finally {
      broker.stop();
    }
    return { scenario: "rabbitmq", figures: figures.list(), notes };
  },
};
