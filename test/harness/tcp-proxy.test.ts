import { createServer, connect, type Server, type Socket } from "node:net";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { TcpProxy } from "./tcp-proxy.js";

let echo: Server;
let proxy: TcpProxy;
const sockets: Socket[] = [];

async function setup(): Promise<void> {
  echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  proxy = new TcpProxy({ target: { host: "127.0.0.1", port: (echo.address() as { port: number }).port } });
  await proxy.start();
}

async function client(): Promise<Socket> {
  const s = connect(proxy.port, "127.0.0.1");
  sockets.push(s);
  await once(s, "connect");
  return s;
}

function roundTrip(s: Socket, text: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      s.off("data", onData);
      resolve(undefined);
    }, timeoutMs);
    const onData = (d: Buffer) => {
      clearTimeout(timer);
      resolve(d.toString());
    };
    s.once("data", onData);
    s.write(text);
  });
}

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await proxy?.stop();
  await new Promise<void>((r) => echo.close(() => r()));
});

describe("TcpProxy", () => {
  it("passes bytes both ways", async () => {
    await setup();
    expect(await roundTrip(await client(), "ping", 2000)).toBe("ping");
    expect(proxy.connections).toBe(1);
  });

  it("cut() closes live connections; a new one works", async () => {
    await setup();
    const s = await client();
    const closed = once(s, "close");
    proxy.cut();
    await closed;
    expect(await roundTrip(await client(), "again", 2000)).toBe("again");
  });

  it("blackhole() passes nothing but keeps the connection; heal() restores new bytes", async () => {
    await setup();
    const s = await client();
    proxy.blackhole();
    expect(await roundTrip(s, "lost", 300)).toBeUndefined();
    expect(s.destroyed).toBe(false);
    proxy.heal();
    expect(await roundTrip(s, "back", 2000)).toBe("back");
  });

  it("delay() adds latency in both directions", async () => {
    await setup();
    const s = await client();
    proxy.delay(150);
    const t = performance.now();
    expect(await roundTrip(s, "slow", 5000)).toBe("slow");
    expect(performance.now() - t).toBeGreaterThanOrEqual(280);
  });

  it("refuse() closes new connections while old ones still work", async () => {
    await setup();
    const old = await client();
    proxy.refuse();
    const fresh = connect(proxy.port, "127.0.0.1");
    sockets.push(fresh);
    fresh.on("error", () => {});
    await once(fresh, "close");
    expect(await roundTrip(old, "still", 2000)).toBe("still");
  });
});
