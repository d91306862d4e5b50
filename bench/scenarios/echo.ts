// echo (peer): raw @grpc/grpc-js bidi echo over mTLS with the bench's certificates, the
// server in its own process: round trips/s with 256 in flight (the transport ceiling), one
// at a time (its latency floor), and what an idle connection with an open stream costs it.
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Client, type ClientDuplexStream } from "@grpc/grpc-js";
import { clientCredentials } from "../../src/rpc/index.js";
import { ROOT, TSX } from "../../test/helpers/process.js";
import { ECHO_SERVICE } from "../peers/echo-service.js";
import { FigureSet, percentile, type ScenarioResult } from "../lib/results.js";
import type { BenchContext, Scenario } from "../lib/scenario.js";
import { measureRoles } from "../lib/usage.js";
import { spawnChild } from "../lib/children.js";

const IN_FLIGHT = 256;
// About a directive's size on the wire.
const PAYLOAD = Buffer.alloc(300, 7);
const method = ECHO_SERVICE.echo!;

function open(ctx: BenchContext, address: string, local = false): { client: Client; call: ClientDuplexStream<Buffer, Buffer> } {
  let closing = false;
  const creds = clientCredentials({ ca: readFileSync(ctx.pki.caFile), cert: (JSON.parse(readFileSync(ctx.pki.agentCerts, "utf8")) as string[])[0]!, key: readFileSync(ctx.pki.agentKey) });
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

/** The echo peer. */
export const echo: Scenario = {
  name: "echo",
  peer: true,
  description: `peer: raw @grpc/grpc-js bidi echo over mTLS, ${IN_FLIGHT} in flight (the transport ceiling)`,
  agents: () => 1,
  async run(ctx): Promise<ScenarioResult> {
    const figures = new FigureSet();
    const idle = ctx.smoke ? 20 : 1000;
    // TLS connections are slow to open from one process on a loaded machine: fewer, once.
    const connections = ctx.smoke ? 10 : 200;
    for (let run = 0; run < ctx.runs; run++) {
      const server = spawnChild(process.execPath, ["--expose-gc", "--import", TSX, join(ROOT, "bench/peers/echo-server.ts"), ctx.pki.caFile, ctx.pki.coordinatorCert, ctx.pki.coordinatorKey], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
      const clients: Client[] = [];
      try {
        const [{ port }] = (await once(server, "message")) as [{ port: number }];
        const address = `localhost:${port}`;
        const { client, call } = open(ctx, address);
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
          const idleCalls = Array.from({ length: connections }, () => open(ctx, address, true));
          for (const c of idleCalls) clients.push(c.client);
          await Promise.all(idleCalls.map((c) => pingPong(c.call, 1, 0)));
          figures.add("echo.idle_kib_per_connection", `server RSS per idle connection with one stream (${connections}, first run)`, "KiB", ((await rss()) - before) / 1024 / connections);
        }
        const before = await rss();
        const streams = Array.from({ length: idle }, () => client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize as (b: Buffer) => Buffer));
        for (const s of streams) s.on("error", () => {});
        await Promise.all(streams.map((s) => pingPong(s, 1, 0)));
        figures.add("echo.idle_kib_per_stream", `server RSS per idle stream, ${idle} on one connection`, "KiB", ((await rss()) - before) / 1024 / idle);
        for (const s of streams) s.cancel();
      } finally {
        for (const c of clients) c.close();
        server.send("stop");
        await once(server, "exit");
      }
    }
    return { scenario: "echo", figures: figures.list(), notes: [] };
  },
};
