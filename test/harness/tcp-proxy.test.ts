import { once } from "node:events";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TcpProxy } from "./tcp-proxy.js";

let echo: Server;
let proxy: TcpProxy;
const sockets = new Set<Socket>();

/** Starts an echo server; every socket it accepts is tracked so afterEach can close it. */
async function startEcho(): Promise<Server> {
  const server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.pipe(s);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return server;
}

function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}

/** Opens a client to the proxy; errors (resets) are expected in these tests and observed through 'close'. */
function dial(port = proxy.port): Socket {
  const s = connect(port, "127.0.0.1");
  sockets.add(s);
  s.on("error", () => {});
  return s;
}

/** Resolves on 'close'; unlike events.once, a reset ('error' first) does not reject it. */
function closed(s: Socket): Promise<void> {
  return new Promise((resolve) => s.once("close", () => resolve()));
}

async function client(): Promise<Socket> {
  const s = dial();
  await once(s, "connect");
  return s;
}

/** Writes `text` and resolves with exactly that many bytes echoed back, or undefined after `timeoutMs`. */
function roundTrip(s: Socket, text: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let got = "";
    const done = (value: string | undefined) => {
      clearTimeout(timer);
      s.off("data", onData);
      resolve(value);
    };
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length >= text.length) done(got);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    s.on("data", onData);
    s.write(text);
  });
}

beforeEach(async () => {
  echo = await startEcho();
  proxy = new TcpProxy({ target: { host: "127.0.0.1", port: portOf(echo) } });
  await proxy.start();
});

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await proxy.stop();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
});

describe("TcpProxy", () => {
  it("passes bytes both ways and counts the pair", async () => {
    expect(proxy.port).toBeGreaterThan(0);
    const s = await client();
    expect(await roundTrip(s, "ping", 2000)).toBe("ping");
    expect(proxy.connections).toBe(1);
    s.destroy();
    await vi.waitFor(() => expect(proxy.connections).toBe(0));
  });

  it("moves a large payload intact (backpressure path)", async () => {
    const s = await client();
    const payload = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
    const chunks: Buffer[] = [];
    let received = 0;
    const all = new Promise<void>((resolve) =>
      s.on("data", (d: Buffer) => {
        chunks.push(d);
        received += d.length;
        if (received >= payload.length) resolve();
      }),
    );
    s.write(payload);
    await all;
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });

  it("passes a half-close on after the data", async () => {
    const s = await client();
    let got = "";
    s.on("data", (d: Buffer) => (got += d.toString()));
    s.end("last words");
    await once(s, "end");
    expect(got).toBe("last words");
  });

  it("cut() resets live connections; a new one works", async () => {
    const a = await client();
    const b = await client();
    expect(await roundTrip(a, "x", 2000)).toBe("x");
    expect(await roundTrip(b, "y", 2000)).toBe("y");
    expect(proxy.connections).toBe(2);
    const errors: string[] = [];
    a.on("error", (e: NodeJS.ErrnoException) => errors.push(e.code ?? ""));
    const bothClosed = Promise.all([closed(a), closed(b)]);
    proxy.cut();
    await bothClosed;
    // A reset, as a real network fault would give, not an orderly FIN.
    expect(errors).toEqual(["ECONNRESET"]);
    await vi.waitFor(() => expect(proxy.connections).toBe(0));
    expect(await roundTrip(await client(), "again", 2000)).toBe("again");
    expect(proxy.connections).toBe(1);
  });

  it("blackhole() passes nothing but keeps connections; heal() lets new bytes flow and dropped ones stay dropped", async () => {
    const s = await client();
    expect(await roundTrip(s, "before", 2000)).toBe("before");
    proxy.blackhole();
    expect(await roundTrip(s, "lost", 300)).toBeUndefined();
    // A connection made during the black hole is accepted but just as silent.
    const late = await client();
    expect(await roundTrip(late, "void", 300)).toBeUndefined();
    expect(s.destroyed).toBe(false);
    expect(proxy.connections).toBe(2);

    proxy.heal();
    let got = "";
    s.on("data", (d: Buffer) => (got += d.toString()));
    expect(await roundTrip(s, "back", 2000)).toBe("back");
    expect(await roundTrip(late, "here", 2000)).toBe("here");
    // Nothing of "lost" trails in after the heal.
    expect(await roundTrip(s, "!", 2000)).toBe("!");
    expect(got).toBe("back!");
  });

  it("delay() adds latency in both directions and keeps order", async () => {
    const s = await client();
    proxy.delay(200);
    const t0 = performance.now();
    expect(await roundTrip(s, "slow", 5000)).toBe("slow");
    // Lower bound only: two directions of 200 ms each, less a little timer slack.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(350);

    // Chunks written apart stay in order, including across a change of delay.
    let got = "";
    s.on("data", (d: Buffer) => (got += d.toString()));
    s.write("a");
    await new Promise((r) => setTimeout(r, 20));
    s.write("b");
    proxy.delay(0);
    s.write("c");
    await vi.waitFor(() => expect(got).toBe("abc"), { timeout: 3000 });
  });

  it("refuse() closes new connections while live ones keep working; heal() accepts again", async () => {
    const live = await client();
    proxy.refuse();
    const fresh = dial();
    await closed(fresh);
    expect(await roundTrip(live, "still", 2000)).toBe("still");
    expect(proxy.connections).toBe(1);
    proxy.heal();
    expect(await roundTrip(await client(), "open", 2000)).toBe("open");
  });

  it("closes the client when the target is down", async () => {
    const down = new TcpProxy({ target: { host: "127.0.0.1", port: portOf(echo) } });
    await new Promise<void>((resolve) => echo.close(() => resolve()));
    const port = await down.start();
    try {
      const s = dial(port);
      await closed(s);
      await vi.waitFor(() => expect(down.connections).toBe(0));
    } finally {
      await down.stop();
      echo = await startEcho();
    }
  });

  it("retarget() sends new connections to the new target; live ones stay put", async () => {
    const old = await client();
    const other = await startEcho();
    try {
      proxy.retarget({ host: "127.0.0.1", port: portOf(other) });
      const fresh = await client();
      expect(await roundTrip(fresh, "new", 2000)).toBe("new");
      expect(await roundTrip(old, "old", 2000)).toBe("old");
      const count = await new Promise<number>((resolve, reject) => other.getConnections((err, n) => (err ? reject(err) : resolve(n))));
      expect(count).toBe(1);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  it("stop() closes every connection, even with chunks in a delay line, and frees the port", async () => {
    const s = await client();
    const port = proxy.port;
    proxy.delay(10_000);
    s.write("never");
    const gone = closed(s);
    await proxy.stop();
    await gone;
    expect(proxy.connections).toBe(0);

    const again = createServer();
    again.listen(port, "127.0.0.1");
    await once(again, "listening");
    await new Promise<void>((resolve) => again.close(() => resolve()));
  });
});
