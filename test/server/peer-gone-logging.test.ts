import { once } from "node:events";
import { createServer, connect, type Socket } from "node:net";
import { PassThrough } from "node:stream";
import { finished } from "node:stream/promises";
import { create } from "@bufbuild/protobuf";
import { Server } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ConnectRequestSchema, type ConnectRequest } from "../../gen/baton/v1/session_pb.js";
import { createLogger } from "../../src/logging.js";
import { adaptService, createChannel, createClient, serverCredentials, type HandlerContext } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { LogCapture, startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

const errorLines = (logs: LogCapture) => logs.lines.filter((l) => l.level === "error" || l.level === "fatal");
/** The adapter's lines about failed handlers, whatever their level. */
const failureLines = (logs: LogCapture) => logs.lines.filter((l) => String(l.msg).startsWith("handler failed"));

/** What a handler's own stream does when the caller it serves goes away: it ends early. */
async function prematureClose(signal: AbortSignal): Promise<never> {
  const body = new PassThrough();
  signal.addEventListener("abort", () => body.destroy(), { once: true });
  await finished(body); // rejects with ERR_STREAM_PREMATURE_CLOSE
  throw new Error("the stream ended normally");
}

/** A connection whose far end resets it (RST): reading it fails with ECONNRESET. */
async function connectionReset(): Promise<never> {
  const server = createServer((socket: Socket) => socket.resetAndDestroy());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const socket = connect((server.address() as { port: number }).port, "127.0.0.1").resume();
    const [err] = (await once(socket, "error")) as [Error];
    throw err;
  } finally {
    server.close();
  }
}

describe("a peer going away is logged at debug, not error", () => {
  it("the adapter: a handler failing because its caller cancelled (premature close) or a connection was reset is not an error; a bug still is", async () => {
    const logs = new LogCapture();
    const logger = createLogger({ level: "debug", destination: logs });
    const started: Array<() => void> = [];
    const handlerStarted = () => new Promise<void>((resolve) => started.push(resolve));
    const adapted = adaptService(
      Health,
      {
        async check(request, ctx: HandlerContext) {
          started.shift()?.();
          if (request.service === "reset") await connectionReset();
          if (request.service === "bug") throw new TypeError("cannot read properties of undefined");
          return prematureClose(ctx.signal);
        },
      },
      { logger },
    );
    const server = new Server();
    server.addService(adapted.definition, adapted.implementation);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", serverCredentials({ ca: fx.pki.ca.certPem, cert: fx.pki.server.certPem, key: fx.pki.server.keyPem }), (err, p) => (err ? reject(err) : resolve(p))),
    );
    fx.defer(() => server.forceShutdown());
    const channel = createChannel(`localhost:${port}`, await fx.pki.credentials("operator", "op"));
    fx.defer(() => channel.close());
    const client = createClient(Health, channel);

    // The caller cancels while the handler is reading: its stream closes early.
    const stop = new AbortController();
    const running = handlerStarted();
    const cancelled = client.check({ service: "" }, { signal: stop.signal });
    await running;
    stop.abort();
    await expect(cancelled).rejects.toMatchObject({ code: 1 });
    await waitFor(() => failureLines(logs).length >= 1, 30_000, "the premature close to be logged");

    // A connection reset under the handler.
    await expect(client.check({ service: "reset" })).rejects.toBeDefined();
    await waitFor(() => failureLines(logs).length >= 2, 30_000, "the reset to be logged");
    expect(errorLines(logs)).toEqual([]);
    expect(failureLines(logs).map((l) => [l.level, l.msg])).toEqual([["debug", "handler failed: the peer went away"], ["debug", "handler failed: the peer went away"]]);

    // Baton's own fault stays an error.
    await expect(client.check({ service: "bug" })).rejects.toMatchObject({ code: 13 });
    await waitFor(() => errorLines(logs).length > 0, 30_000, "the bug to be logged at error");
    expect(errorLines(logs).map((l) => l.msg)).toEqual(["handler failed"]);
  }, 120_000);

  it("the coordinator: a Connect stream that fails because the agent went away closes the session without an error line", async () => {
    fx.srv = await startServer(fx.pki);
    const coordinator = fx.srv.server.coordinator;
    const gone = new AbortController();
    async function* requests(): AsyncGenerator<ConnectRequest> {
      yield create(ConnectRequestSchema, { kind: { case: "hello", value: { agentId: "a1", capabilities: ["python"] } } });
      // What reading a Node stream whose peer vanished throws.
      await prematureClose(gone.signal);
    }
    const ctx: HandlerContext = {
      method: "/baton.v1.Coordinator/Connect",
      signal: new AbortController().signal,
      deadline: undefined,
      requestHeader: new Map(),
      peer: { address: "ipv4:127.0.0.1:40000", certificate: undefined },
      identity: { uri: `spiffe://${fx.pki.trustDomain}/managed_agent/a1`, trustDomain: fx.pki.trustDomain, role: "managed_agent", name: "a1" },
      correlationId: "peer-gone-test",
      logger: fx.srv.logger,
    };
    const frames = coordinator.connect(requests(), ctx)[Symbol.asyncIterator]();
    expect((await frames.next()).value?.kind.case).toBe("welcome");
    gone.abort();
    await waitFor(() => fx.srv.logs.lines.find((l) => l.msg === "agent session closed" && l.agent_id === "a1"), 30_000, "the session to close");
    for (;;) if ((await frames.next().catch(() => ({ done: true }))).done) break;
    expect(errorLines(fx.srv.logs)).toEqual([]);
    expect(fx.srv.logs.lines.some((l) => l.level === "debug" && l.msg === "agent session failed: the peer went away" && l.code === "ERR_STREAM_PREMATURE_CLOSE")).toBe(true);
  }, 120_000);
});
