import { connect as netConnect, createServer as createNetServer, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { describe, expect, it } from "vitest";
import { credentials as grpcCredentials } from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { buildConfig, ConfigError, configFromEnv } from "../../src/config.js";
import { Code } from "../../src/errors.js";
import { createChannel, createClient, type Channel } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitForAsync, type TestServer } from "../helpers/server.js";

// Half-open handshakes (issue 10, item 7): sockets that stall before TLS, TLS connections
// that never speak HTTP/2, and floods past the connection caps, against real servers.

const fx = useFixture();

/** A TLS record header and one byte of a ClientHello: a handshake that never finishes. */
const SIX_BYTES = Buffer.from([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01]);

/** A socket the test opened, with when it connected and when the server closed it. */
interface Held {
  socket: Socket;
  connectedAt: number;
  closed: Promise<number>;
  isClosed: boolean;
}

function hold(socket: Socket, connectEvent: "connect" | "secureConnect"): Promise<Held> {
  return new Promise((resolve, reject) => {
    const held: Held = { socket, connectedAt: 0, isClosed: false, closed: new Promise((r) => socket.once("close", () => r(Date.now()))) };
    void held.closed.then(() => (held.isClosed = true));
    // Refused sockets are reset: that is what the test waits for, not a failure.
    socket.on("error", () => {});
    socket.once(connectEvent, () => {
      held.connectedAt = Date.now();
      resolve(held);
    });
    socket.once("close", () => reject(new Error(`closed before ${connectEvent}`)));
  });
}

/** `n` raw TCP sockets from `localAddress` that send `bytes` and then say nothing more. */
async function stallers(port: number, n: number, bytes: Buffer = SIX_BYTES, localAddress = "127.0.0.1"): Promise<Held[]> {
  const out: Held[] = [];
  // In batches, so the listen backlog is never what refuses them.
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, async () => {
        const held = await hold(netConnect({ host: "127.0.0.1", port, localAddress }), "connect");
        held.socket.write(bytes);
        return held;
      }),
    );
    out.push(...batch);
  }
  fx.defer(() => out.forEach((h) => h.socket.destroy()));
  return out;
}

/** Resolves when every socket has been closed by the server; rejects after `ms`, saying what it waited for. */
async function allClosed(held: Held[], ms: number, what: string): Promise<number[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what} (${held.filter((h) => !h.isClosed).length} of ${held.length} still open)`)), ms);
  });
  try {
    return await Promise.race([Promise.all(held.map((h) => h.closed)), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function metric(srv: TestServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = srv.server.registry.getSingleMetric(name);
  if (!m) return Number.NaN;
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((sum, v) => sum + v.value, 0);
}

const refused = (srv: TestServer, reason: string) => metric(srv, "baton_connections_refused_total", { reason });
const open = (srv: TestServer) => metric(srv, "baton_connections_open");

/** Polls an async condition (a metric read at scrape time) until it holds; rejects after `ms`. */
async function operatorChannel(): Promise<Channel> {
  return fx.channel(await fx.pki.credentials("operator", "ops"));
}

async function healthCheck(channel: Channel, deadlineMs = 10_000): Promise<HealthCheckResponse_ServingStatus> {
  const res = await createClient(Health, channel).check({ service: "" }, { deadline: deadlineMs });
  return res.status;
}

/** Retries a health check on the same channel until it succeeds (the channel may be in reconnect backoff). */
async function healthyAgain(channel: Channel, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      expect(await healthCheck(channel, 5000)).toBe(HealthCheckResponse_ServingStatus.SERVING);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Log lines about connections closed for `reason`. */
const refusalLines = (srv: TestServer, reason: string) => srv.logs.lines.filter((l) => l.reason === reason && l.level === "warn");

describe("TLS handshake timeout", () => {
  it("raw sockets that send 6 bytes and stall are closed after the timeout, while mTLS Health/Check and an agent still succeed", async () => {
    const timeoutMs = 1500;
    fx.srv = await startServer(fx.pki, { transport: { tlsHandshakeTimeoutMs: timeoutMs } });
    const held = await stallers(fx.srv.port, 200);
    // While they hold their sockets, real clients are served.
    expect(await healthCheck(await operatorChannel())).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const agent = await fx.agent("task_executor_1", { capabilities: ["python"] });
    expect((await agent.connect()).sessionId).toBeTruthy();
    const closedAt = await allClosed(held, 20_000, "the server to close the stalled handshakes");
    // Closed by the timeout: not sooner (timers may fire a little early, never much).
    closedAt.forEach((at, i) => expect(at - held[i]!.connectedAt).toBeGreaterThanOrEqual(timeoutMs - 100));
    expect(await refused(fx.srv, "tls_handshake_timeout")).toBe(200);
    // Logged, but not once per socket: an attack cannot flood the log.
    const lines = refusalLines(fx.srv, "tls_handshake_timeout");
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines.length).toBeLessThanOrEqual(3);
    // The legitimate connections are still open and counted; the stalled ones no longer are.
    await waitForAsync(async () => (await open(fx.srv)) < 10, 10_000, "the open-connections gauge to drop the closed handshakes");
    expect(await healthCheck(await operatorChannel())).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("a handshake that trickles in a byte at a time is still closed at the timeout (it is not an idle timeout)", async () => {
    const timeoutMs = 1500;
    fx.srv = await startServer(fx.pki, { transport: { tlsHandshakeTimeoutMs: timeoutMs } });
    const held = await stallers(fx.srv.port, 5);
    const drip = setInterval(() => held.forEach((h) => h.isClosed || h.socket.write(Buffer.from([0]))), 200);
    fx.defer(() => clearInterval(drip));
    const closedAt = await allClosed(held, 20_000, "the server to close handshakes that trickle in");
    closedAt.forEach((at, i) => expect(at - held[i]!.connectedAt).toBeGreaterThanOrEqual(timeoutMs - 100));
    expect(await refused(fx.srv, "tls_handshake_timeout")).toBe(5);
  });
});

describe("HTTP/2 preface deadline", () => {
  async function tlsOnly(port: number, n: number): Promise<Held[]> {
    const leaf = await fx.pki.issue("operator", "silent");
    const out = await Promise.all(
      Array.from({ length: n }, () =>
        hold(tlsConnect({ host: "localhost", port, servername: "localhost", ca: fx.pki.ca.certPem, cert: leaf.certPem, key: leaf.keyPem, ALPNProtocols: ["h2"] }), "secureConnect"),
      ),
    );
    fx.defer(() => out.forEach((h) => h.socket.destroy()));
    return out;
  }

  it("TLS connections that complete the handshake but never send the preface are closed after the deadline", async () => {
    const deadlineMs = 1500;
    fx.srv = await startServer(fx.pki, { transport: { prefaceTimeoutMs: deadlineMs } });
    const held = await tlsOnly(fx.srv.port, 50);
    expect(held.every((h) => (h.socket as TLSSocket).alpnProtocol === "h2")).toBe(true);
    expect(await healthCheck(await operatorChannel())).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const closedAt = await allClosed(held, 20_000, "the server to close the connections that never spoke HTTP/2");
    closedAt.forEach((at, i) => expect(at - held[i]!.connectedAt).toBeGreaterThanOrEqual(deadlineMs - 100));
    expect(await refused(fx.srv, "preface_timeout")).toBe(50);
    expect(refusalLines(fx.srv, "preface_timeout").length).toBeLessThanOrEqual(3);
  });

  it("a TLS connection that sends something other than the HTTP/2 preface is closed at once", async () => {
    fx.srv = await startServer(fx.pki, { transport: { prefaceTimeoutMs: 60_000 } });
    const [held] = await tlsOnly(fx.srv.port, 1);
    held!.socket.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    await allClosed([held!], 10_000, "the server to close a connection that is not HTTP/2");
    expect(await refused(fx.srv, "bad_preface")).toBe(1);
  });

  it("in mesh mode (plaintext) a socket that stalls inside the preface is closed after the deadline", async () => {
    const deadlineMs = 1500;
    fx.srv = await startServer(fx.pki, { mesh: { enabled: true, trustedPeers: ["127.0.0.1"] }, transport: { prefaceTimeoutMs: deadlineMs } }, undefined, true);
    const held = await stallers(fx.srv.port, 20, Buffer.from("PRI * "));
    const channel = createChannel(`127.0.0.1:${fx.srv.port}`, grpcCredentials.createInsecure());
    fx.defer(() => channel.close());
    const headers = { "x-forwarded-client-cert": "URI=spiffe://baton.local/operator/ops" };
    expect((await createClient(Health, channel).check({ service: "" }, { headers, deadline: 10_000 })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const closedAt = await allClosed(held, 20_000, "the server to close the stalled plaintext prefaces");
    closedAt.forEach((at, i) => expect(at - held[i]!.connectedAt).toBeGreaterThanOrEqual(deadlineMs - 100));
    expect(await refused(fx.srv, "preface_timeout")).toBe(20);
  });

  it("a preface that arrives a byte at a time within the deadline is served (the bytes read are handed on)", async () => {
    fx.srv = await startServer(fx.pki, { mesh: { enabled: true, trustedPeers: ["127.0.0.1"] } }, undefined, true);
    const target = fx.srv.port;
    // A forwarder that writes the client's first 80 bytes (the preface and its SETTINGS) one by one.
    const splitter = createNetServer((client) => {
      const upstream = netConnect({ host: "127.0.0.1", port: target });
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      upstream.pipe(client);
      let left = 80;
      let chain = Promise.resolve();
      client.on("data", (chunk: Buffer) => {
        const head = chunk.subarray(0, Math.max(0, left));
        const rest = chunk.subarray(head.length);
        left -= head.length;
        chain = chain.then(async () => {
          for (const byte of head) {
            upstream.write(Buffer.from([byte]));
            await new Promise((r) => setTimeout(r, 2));
          }
          if (rest.length > 0) upstream.write(rest);
        });
      });
      client.on("end", () => void chain.then(() => upstream.end()));
    });
    await new Promise<void>((resolve) => splitter.listen(0, "127.0.0.1", resolve));
    fx.defer(() => new Promise((resolve) => splitter.close(resolve)));
    const port = (splitter.address() as { port: number }).port;
    const channel = createChannel(`127.0.0.1:${port}`, grpcCredentials.createInsecure());
    fx.defer(() => channel.close());
    const headers = { "x-forwarded-client-cert": "URI=spiffe://baton.local/operator/ops" };
    expect((await createClient(Health, channel).check({ service: "" }, { headers, deadline: 10_000 })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(await refused(fx.srv, "preface_timeout")).toBe(0);
    expect(await refused(fx.srv, "bad_preface")).toBe(0);
  });
});

describe("connection caps", () => {
  it("refuses connections past the per-address cap at once, serves other addresses, and lets clients back once under it", async () => {
    const cap = 20;
    // Loopback is exempt by default; here the cap applies to it so the test can fill it.
    fx.srv = await startServer(fx.pki, { transport: { maxConnectionsPerAddress: cap, maxConnectionsPerAddressExempt: [], tlsHandshakeTimeoutMs: 60_000 } });
    const channel = await operatorChannel();
    expect(await healthCheck(channel)).toBe(HealthCheckResponse_ServingStatus.SERVING);
    // The channel's own connection is one of the cap.
    const filling = await stallers(fx.srv.port, cap - 1);
    await waitForAsync(async () => (await open(fx.srv)) === cap, 10_000, "the server to count the connections that fill the cap");
    const beyond = await stallers(fx.srv.port, 10);
    await allClosed(beyond, 10_000, "the server to refuse connections past the per-address cap");
    expect(await refused(fx.srv, "max_connections_per_address")).toBe(10);
    expect(filling.some((h) => h.isClosed)).toBe(false);
    // A new connection from 127.0.0.1 is refused too; one from another address is not.
    const fresh = fx.channel(await fx.pki.credentials("operator", "ops2"));
    await expect(healthCheck(fresh)).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    const other = await stallers(fx.srv.port, 5, SIX_BYTES, "127.0.0.2");
    await waitForAsync(async () => (await open(fx.srv)) === cap + 5, 10_000, "the server to count the connections from another address");
    expect(other.some((h) => h.isClosed)).toBe(false);
    // Refusals are logged, rate-limited.
    const lines = refusalLines(fx.srv, "max_connections_per_address");
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines.length).toBeLessThanOrEqual(3);
    // Under the cap again, the refused client reconnects.
    filling.forEach((h) => h.socket.destroy());
    await waitForAsync(async () => (await open(fx.srv)) <= 6, 10_000, "the server to count the released connections");
    await healthyAgain(fresh, 20_000);
  });

  it("loopback is exempt from the per-address cap by default (benchmarks run many agents on one host)", async () => {
    fx.srv = await startServer(fx.pki, { transport: { maxConnectionsPerAddress: 5, tlsHandshakeTimeoutMs: 60_000 } });
    const held = await stallers(fx.srv.port, 30);
    await waitForAsync(async () => (await open(fx.srv)) === 30, 10_000, "the server to accept 30 loopback connections");
    expect(held.some((h) => h.isClosed)).toBe(false);
    expect(await refused(fx.srv, "max_connections_per_address")).toBe(0);
  });

  it("refuses connections past the total cap at once (and counts them); clients reconnect once under it", async () => {
    const cap = 30;
    fx.srv = await startServer(fx.pki, { transport: { maxConnections: cap, tlsHandshakeTimeoutMs: 60_000 } });
    const channel = await operatorChannel();
    expect(await healthCheck(channel)).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const filling = await stallers(fx.srv.port, cap - 1, SIX_BYTES, "127.0.0.2");
    await waitForAsync(async () => (await open(fx.srv)) === cap, 10_000, "the server to count the connections that fill the cap");
    const beyond = await stallers(fx.srv.port, 5, SIX_BYTES, "127.0.0.3");
    await allClosed(beyond, 10_000, "the server to refuse connections past the total cap");
    expect(await refused(fx.srv, "max_connections")).toBe(5);
    const fresh = fx.channel(await fx.pki.credentials("operator", "ops2"));
    await expect(healthCheck(fresh)).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    expect(await refused(fx.srv, "max_connections")).toBeGreaterThan(5);
    // The connection that was open before the cap filled keeps working.
    expect(await healthCheck(channel)).toBe(HealthCheckResponse_ServingStatus.SERVING);
    filling.forEach((h) => h.socket.destroy());
    await waitForAsync(async () => (await open(fx.srv)) <= 2, 10_000, "the server to count the released connections");
    await healthyAgain(fresh, 20_000);
  });
});

describe("listener lifecycle", () => {
  it("shutdown closes the sockets still in their handshake and frees the port", async () => {
    fx.srv = await startServer(fx.pki, { transport: { tlsHandshakeTimeoutMs: 60_000 } });
    const { port } = fx.srv;
    expect(port).toBeGreaterThan(0);
    const held = await stallers(port, 20);
    await fx.srv.stop();
    await allClosed(held, 10_000, "shutdown to close the sockets still in their handshake");
    const refusedConnect = await new Promise<string>((resolve) => {
      const s = netConnect({ host: "127.0.0.1", port });
      s.once("connect", () => {
        s.destroy();
        resolve("connected");
      });
      s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
    });
    expect(refusedConnect).toBe("ECONNREFUSED");
  });
});

describe("connection limit settings", () => {
  const base = { listen: "127.0.0.1:0", store: { kind: "memory" as const }, adminListen: "" };
  const build = (transport: Record<string, unknown>) => () => buildConfig(base, { transport } as never);

  it("has defaults that fit a benchmark of 10,000 agents on one host", () => {
    const { transport } = build({})();
    expect(transport.tlsHandshakeTimeoutMs).toBe(5000);
    expect(transport.prefaceTimeoutMs).toBe(5000);
    expect(transport.maxConnections).toBe(20_000);
    expect(transport.maxConnectionsPerAddress).toBe(1000);
    expect(transport.maxConnectionsPerAddressExempt).toEqual(["127.0.0.0/8", "::1"]);
  });

  it.each([
    ["tlsHandshakeTimeoutMs", 0, /transport\.tlsHandshakeTimeoutMs must be a whole number from 1 to 2147483647/],
    ["tlsHandshakeTimeoutMs", 3e9, /transport\.tlsHandshakeTimeoutMs must be a whole number from 1 to 2147483647/],
    ["prefaceTimeoutMs", 0, /transport\.prefaceTimeoutMs must be a whole number from 1 to 2147483647/],
    ["prefaceTimeoutMs", 1.5, /transport\.prefaceTimeoutMs must be a whole number from 1 to 2147483647/],
    ["maxConnections", 0, /transport\.maxConnections must be a positive whole number/],
    ["maxConnectionsPerAddress", -1, /transport\.maxConnectionsPerAddress must be a positive whole number/],
    ["maxConnectionsPerAddressExempt", ["localhost"], /transport\.maxConnectionsPerAddressExempt: "localhost" is not an IP address or CIDR range/],
  ])("refuses transport.%s = %j", (key, value, message) => {
    expect(build({ [key]: value })).toThrow(ConfigError);
    expect(build({ [key]: value })).toThrow(message);
  });

  it("reads the limits from the environment", () => {
    const env = configFromEnv({ BATON_TLS_HANDSHAKE_TIMEOUT_MS: "2000", BATON_PREFACE_TIMEOUT_MS: "3000", BATON_MAX_CONNECTIONS: "50000", BATON_MAX_CONNECTIONS_PER_ADDRESS: "20000" });
    const { transport } = buildConfig(base, env);
    expect([transport.tlsHandshakeTimeoutMs, transport.prefaceTimeoutMs, transport.maxConnections, transport.maxConnectionsPerAddress]).toEqual([2000, 3000, 50_000, 20_000]);
  });
});
