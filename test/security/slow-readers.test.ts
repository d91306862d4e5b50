import { describe, expect, it } from "vitest";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { createAgent } from "../../src/agent/index.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { TcpProxy } from "../harness/tcp-proxy.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

// A peer that stops reading must cost bounded memory: the server cuts it off with
// RESOURCE_EXHAUSTED once its queue is full, and everyone else carries on.

const fx = useFixture();

/** A proxy between the slow peer and the server: black-holed, the peer reads nothing and acknowledges nothing. */
async function proxy(): Promise<TcpProxy> {
  const p = new TcpProxy({ target: { host: "127.0.0.1", port: fx.srv.port } });
  await p.start();
  fx.defer(() => p.stop());
  return p;
}

describe("a peer that does not read", () => {
  it("a watcher is cut off with RESOURCE_EXHAUSTED; another watcher and the server carry on", async () => {
    fx.srv = await startServer(fx.pki);
    const p = await proxy();
    const control = createClient(Control, createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops")));
    const slowChannel = createChannel(`localhost:${p.port}`, await fx.pki.credentials("operator", "slow"));
    fx.defer(() => slowChannel.close());
    const slow = createClient(Control, slowChannel).watchEvents({ topics: ["#"] });
    const first = slow[Symbol.asyncIterator]().next();
    // The watch is registered once its first event arrives; until then, keep making events.
    let settled = false;
    void first.then(() => (settled = true));
    for (let i = 0; !settled && i < 100; i++) {
      await control.submitTask({ task: { taskId: `first-${i}` } });
      await new Promise((r) => setTimeout(r, 50));
    }
    const cursor = (await first).value?.event?.cursor ?? 0n;
    // From here the slow watcher's bytes go nowhere: HTTP/2 flow control stops the server's writes.
    p.blackhole();
    // A second watcher on narrow topics, from the same cursor (so no event can slip by before it is registered).
    const healthy = control.watchEvents({ topics: ["task.t0.#", "task.after-cutoff.#"], afterCursor: cursor });
    const healthySeen: string[] = [];
    let healthyError: unknown;
    void (async () => {
      for await (const e of healthy) healthySeen.push(e.event?.topic ?? "");
    })().catch((err: unknown) => (healthyError = err));
    const cutOff = () => fx.srv.logs.lines.find((l) => l.msg === "call refused" && l.code === "RESOURCE_EXHAUSTED" && l.method === "/baton.v1.Control/WatchEvents");
    let submitted = 0;
    while (!cutOff() && submitted < 10_000) {
      await Promise.all(Array.from({ length: 50 }, () => control.submitTask({ task: { taskId: `t${submitted++}` } })));
    }
    expect(cutOff()?.reason).toMatch(/fell behind|too slow|not reading|capacity/i);
    // The other watcher saw the flood's first task, and sees a task submitted after the cut-off.
    await control.submitTask({ task: { taskId: "after-cutoff" } });
    await waitFor(() => healthySeen.some((t) => t.startsWith("task.after-cutoff.")), 30_000, "the other watcher to see a task after the cut-off");
    expect(healthySeen.some((t) => t.startsWith("task.t0."))).toBe(true);
    expect(healthyError).toBeUndefined();
    await expect(control.listAgents({})).resolves.toBeTruthy();
  }, 180_000);

  it("an agent is cut off with RESOURCE_EXHAUSTED when its outbox is full; another agent carries on", async () => {
    fx.srv = await startServer(fx.pki, { session: { outboxCapacity: 20, maxInFlightLimit: 16, defaultMaxInFlight: 16, statusTimeoutMs: 30_000 } });
    const p = await proxy();
    const bystander = createAgent({ address: fx.srv.address, agentId: "bystander", credentials: await fx.pki.credentials("managed_agent", "bystander"), capabilities: ["python"] });
    fx.defer(() => bystander.close());
    await bystander.connect();
    void bystander.run(async () => ({ ok: true }));
    const sloth = createAgent({ address: `localhost:${p.port}`, agentId: "sloth", credentials: await fx.pki.credentials("managed_agent", "sloth"), reconnect: false });
    fx.defer(() => sloth.close());
    await sloth.connect();
    p.blackhole();
    const control = createClient(Control, createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops")));
    const cutOff = () => fx.srv.logs.lines.find((l) => l.msg === "agent session closed" && l.agent_id === "sloth");
    // Status requests pile up for the agent that reads none of them.
    for (let asked = 0; !cutOff() && asked < 10_000; asked += 200) {
      for (let i = 0; i < 200; i++) void control.getAgentStatus({ agentId: "sloth", timeoutMs: 20_000 }).catch(() => {});
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(cutOff()?.reason).toMatch(/sloth is not reading: its outbox is full/);
    const { agent } = await control.getAgent({ agentId: "bystander" });
    expect(agent?.agentId).toBe("bystander");
    expect(bystander.session).toBeDefined();
  }, 180_000);
});
