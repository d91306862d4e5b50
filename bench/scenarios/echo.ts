// echo (peer): raw @grpc/grpc-js bidi echo over mTLS with the bench's certificates, the
// server in its own process: round trips/s with 256 in flight (the transport ceiling), one
// at a time (its latency floor), and what an idle connection with an open stream costs it.
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Client, type ClientDuplexStream } from "@grpc/grpc-js";
import { clientCredentials, type TlsMaterial } from "../../src/rpc/index.js";
import { ROOT, TSX } from "../../test/helpers/process.js";
import { ECHO_SERVICE } from "../peers/echo-service.js";
import { FigureSet, percentile, type ScenarioResult } from "../lib/results.js";
import type { BenchContext, Scenario } from "../lib/scenario.js";
import { measureRoles, readUsage } from "../lib/usage.js";
import { spawnChild } from "../lib/children.js";

const IN_FLIGHT = 256;
// The throughput scenario's window of unary submits.
const UNARY_IN_FLIGHT = 512;
// About a directive's size on the wire.
const PAYLOAD = Buffer.alloc(300, 7);
const method = ECHO_SERVICE.echo!;
const unaryMethod = ECHO_SERVICE.unary!;

/** An agent's TLS material; read once, as the agents' certificate list is large. */
function agentTls(ctx: BenchContext): TlsMaterial {
  return { ca: readFileSync(ctx.pki.caFile), cert: (JSON.parse(readFileSync(ctx.pki.agentCerts, "utf8")) as string[])[0]!, key: readFileSync(ctx.pki.agentKey) };
}

function open(ctx: BenchContext, tls: TlsMaterial, address: string, local = false): { client: Client; call: ClientDuplexStream<Buffer, Buffer> } {
  let closing = false;
  // Credentials of their own per client: a secure context each, as every agent has.
  const creds = clientCredentials(tls);
  // A pool of its own per client, or grpc-js would share one connection between them.
  const client = new Client(address, creds, local ? { "grpc.use_local_subchannel_pool": 1 } : {});
  const call = client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize as (b: Buffer) => Buffer);
  call.on("error", (err) => closing || ctx.log(`  echo call failed: ${err.message}`));
  const close = client.close.bind(client);
  client.close = () => ((closing = true), call.cancel(), close());
  return { client, call };
}

/** Round trips/s with `inFlight` messages outstanding for `ms`, and each one's time. */
async function pingPong(call: ClientDuplexStream<Buffer, Buffer>, inFlight: number, ms: number): Promise<{ perSecond: number; latencies: number[] }> {
  const sent: number[] = [];
  const latencies: number[] = [];
  const t0 = performance.now();
  let stop = false;
  await new Promise<void>((resolve) => {
    let outstanding = 0;
    const send = () => {
      sent.push(performance.now());
      outstanding++;
      call.write(PAYLOAD);
    };
    const onData = () => {
      // Echoes come back in order on one stream.
      latencies.push(performance.now() - sent[latencies.length]!);
      outstanding--;
      if (!stop && performance.now() - t0 >= ms) stop = true;
      if (!stop) send();
      else if (outstanding === 0) (call.off("data", onData), resolve());
    };
    call.on("data", onData);
    for (let i = 0; i < inFlight; i++) send();
  });
  return { perSecond: latencies.length / ((performance.now() - t0) / 1000), latencies: latencies.sort((a, b) => a - b) };
}

/** Unary calls/s with `inFlight` outstanding for `ms`: what a call costs grpc-js without any work. */
async function unaryCalls(client: Client, inFlight: number, ms: number): Promise<number> {
  const t0 = performance.now();
  let done = 0;
  const one = () =>
    new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest(unaryMethod.path, unaryMethod.requestSerialize, unaryMethod.responseDeserialize as (b: Buffer) => Buffer, PAYLOAD, (err) => (err ? reject(err) : resolve())),
    );
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (performance.now() - t0 < ms) {
      await one();
      done++;
    }
  }));
  return done / ((performance.now() - t0) / 1000);
}

/** The echo peer. */
export const echo: Scenario = {
  name: "echo",
  peer: true,
  description: `peer: raw @grpc/grpc-js bidi echo over mTLS, ${IN_FLIGHT} in flight, and unary calls, ${UNARY_IN_FLIGHT} in flight (the transport ceiling)`,
  agents: () => 1,
  async run(ctx): Promise<ScenarioResult> {
    const figures = new FigureSet();
    const idle = ctx.smoke ? 20 : 1000;
    // TLS connections are slow to open from one process on a loaded machine: fewer, once.
    const connections = ctx.smoke ? 10 : 200;
    const tls = agentTls(ctx);
    for (let run = 0; run < ctx.runs; run++) {
      const server = spawnChild(process.execPath, ["--expose-gc", "--import", TSX, join(ROOT, "bench/peers/echo-server.ts"), ctx.pki.caFile, ctx.pki.coordinatorCert, ctx.pki.coordinatorKey], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
      const clients: Client[] = [];
      try {
        const [{ port }] = (await once(server, "message")) as [{ port: number }];
        const address = `localhost:${port}`;
        const { client, call } = open(ctx, tls, address);
        clients.push(client);
        await pingPong(call, 1, 500);
        const usage = measureRoles({ "echo server": [server.pid!], "driver (bench)": [process.pid] });
        const many = await pingPong(call, IN_FLIGHT, ctx.smoke ? 1000 : 5000);
        usage.finish(figures, "echo", `, ${IN_FLIGHT} in flight`);
        figures.add("echo.round_trips_per_s", `round trips/s, ${IN_FLIGHT} in flight`, "msg/s", many.perSecond);
        const one = await pingPong(call, 1, ctx.smoke ? 500 : 3000);
        figures.add("echo.p50_us", "round trip p50, one at a time", "us", percentile(one.latencies, 0.5) * 1000);
        figures.add("echo.p99_us", "round trip p99, one at a time", "us", percentile(one.latencies, 0.99) * 1000);
        // What idle connections (one stream each, as agents have) and idle streams on one connection cost the server.
        const rss = async () => (server.send("gc"), ((await once(server, "message")) as [{ rss: number }])[0].rss);
        if (run === 0) {
          const before = await rss();
          // What opening a connection costs each side: the mutual TLS handshake, HTTP/2 and a
          // stream, each client with its own credentials as an agent has (the floor under "connect").
          const serverCpu = readUsage(server.pid!)!.cpuMs;
          const driverCpu = process.cpuUsage();
          const idleCalls = Array.from({ length: connections }, () => open(ctx, tls, address, true));
          for (const c of idleCalls) clients.push(c.client);
          await Promise.all(idleCalls.map((c) => pingPong(c.call, 1, 0)));
          const driverMs = ((u) => (u.user + u.system) / 1000)(process.cpuUsage(driverCpu));
          figures.add("echo.connect_server_cpu_ms", `server CPU per new mTLS connection with a stream (${connections}, first run)`, "ms", (readUsage(server.pid!)!.cpuMs - serverCpu) / connections);
          figures.add("echo.connect_client_cpu_ms", `client CPU per new mTLS connection, its credentials included (${connections}, first run)`, "ms", driverMs / connections);
          figures.add("echo.idle_kib_per_connection", `server RSS per idle connection with one stream (${connections}, first run)`, "KiB", ((await rss()) - before) / 1024 / connections);
          // Heartbeat traffic: 1,000 agents with a heartbeat each way every 5 s exchange 200
          // round trips a second, each alone on its connection. The same rate over these
          // connections (one round trip each per second, staggered so none share a wake-up)
          // is what the transport alone costs an idle coordinator of 1,000 agents.
          const spreadMs = (connections * 1000) / 200;
          const sparseMs = ctx.smoke ? 1000 : 5000;
          const sparseCpu = readUsage(server.pid!)!.cpuMs;
          const sparseStart = performance.now();
          let sparse = 0;
          await Promise.all(idleCalls.map(async (c, i) => {
            await new Promise((r) => setTimeout(r, (i * spreadMs) / idleCalls.length));
            for (let at = performance.now(); at - sparseStart < sparseMs; at += spreadMs) {
              sparse += (await pingPong(c.call, 1, 0)).latencies.length;
              await new Promise((r) => setTimeout(r, Math.max(0, at + spreadMs - performance.now())));
            }
          }));
          const sparseCpuMs = readUsage(server.pid!)!.cpuMs - sparseCpu;
          const sparseLabel = `200 round trips/s, each alone on one of ${connections} connections (1,000 agents' heartbeats)`;
          figures.add("echo.heartbeat_rate_cpu_pct", `server CPU at ${sparseLabel}`, "% of a core", (100 * sparseCpuMs) / (performance.now() - sparseStart));
          figures.add("echo.heartbeat_rate_us_per_round_trip", `server CPU per round trip at ${sparseLabel}`, "us", (sparseCpuMs * 1000) / Math.max(1, sparse));
        }
        const before = await rss();
        const streams = Array.from({ length: idle }, () => client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize as (b: Buffer) => Buffer));
        for (const s of streams) s.on("error", () => {});
        await Promise.all(streams.map((s) => pingPong(s, 1, 0)));
        figures.add("echo.idle_kib_per_stream", `server RSS per idle stream, ${idle} on one connection`, "KiB", ((await rss()) - before) / 1024 / idle);
        for (const s of streams) s.cancel();
        // Last, so its garbage is not in the memory figures above.
        await unaryCalls(client, 16, 300);
        const unaryUsage = measureRoles({ "echo server": [server.pid!], "driver (bench)": [process.pid] });
        const unary = await unaryCalls(client, UNARY_IN_FLIGHT, ctx.smoke ? 1000 : 5000);
        unaryUsage.finish(figures, "echo.unary", `, unary, ${UNARY_IN_FLIGHT} in flight`);
        figures.add("echo.unary_calls_per_s", `unary calls/s, ${UNARY_IN_FLIGHT} in flight`, "calls/s", unary);
      } finally {
        for (const c of clients) c.close();
        server.send("stop");
        await once(server, "exit");
      }
    }
    return { scenario: "echo", figures: figures.list(), notes: [] };
  },
};
