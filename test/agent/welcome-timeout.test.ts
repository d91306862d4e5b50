import { once } from "node:events";
import { describe, expect, it } from "vitest";
import { createAgent, type Reconnecting } from "../../src/agent/index.js";
import { Code } from "../../src/errors.js";
import { TcpProxy } from "../harness/tcp-proxy.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer } from "../helpers/server.js";

const fx = useFixture();

// Heartbeats watch a session from its Welcome on. A reconnect whose handshake bytes are lost
// (the connection accepted, nothing answered) stalls before that: the agent gives the attempt
// up after welcomeTimeoutMs and dials again, instead of waiting on it for good.
describe("an attempt that gets no Welcome", () => {
  it("is given up after welcomeTimeoutMs, and the agent dials again and gets its session back", async () => {
    fx.srv = await startServer(fx.pki, { session: { disconnectGraceMs: 60_000 } });
    const proxy = new TcpProxy({ target: { host: "127.0.0.1", port: fx.srv.port } });
    await proxy.start();
    fx.defer(() => proxy.stop());
    const agent = createAgent({ address: `localhost:${proxy.port}`, agentId: "welcome_timeout", credentials: await fx.pki.credentials("managed_agent", "welcome_timeout"), reconnectInitialMs: 20, reconnectMaxMs: 100, welcomeTimeoutMs: 1000 });
    fx.defer(() => agent.close());
    await agent.connect();
    const tries: Reconnecting[] = [];
    agent.on("reconnecting", (r) => tries.push(r));
    // New connections are accepted and then hear nothing; the live one is cut.
    proxy.blackhole();
    proxy.cut();
    await once(agent, "reconnecting");
    // The black hole is gone once the attempt under way has lost its first bytes: that attempt can never finish.
    await new Promise((r) => setTimeout(r, 100));
    proxy.heal();
    const [welcome] = (await once(agent, "welcome")) as [{ resumed: boolean }];
    expect(welcome.resumed).toBe(true);
    // The stalled attempt ended for want of a Welcome, not for any error of the connection.
    expect(tries.some((t) => t.end.code === Code.UNAVAILABLE && /no Welcome from the coordinator within 1000 ms/.test(t.end.message))).toBe(true);
  });

  it("refuses a welcomeTimeoutMs that is not a positive number", async () => {
    const credentials = await fx.pki.credentials("managed_agent", "welcome_timeout_bad");
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => createAgent({ address: "localhost:1", agentId: "welcome_timeout_bad", credentials, welcomeTimeoutMs: bad })).toThrow(/welcomeTimeoutMs must be a positive number of ms/);
    }
  });
});
