import { once } from "node:events";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import type { SessionEnd } from "../../src/agent/index.js";
import { Code } from "../../src/errors.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitForAsync } from "../helpers/server.js";

const fx = useFixture();

/**
 * A TCP relay that can hold back what the coordinator sends (the agent's side still flows),
 * then hand it all on: a coordinator that goes silent without the connection breaking.
 * test/harness/tcp-proxy.ts has no one-way hold: its black hole drops bytes, which breaks HTTP/2.
 */
class OneWayHold {
  private readonly server: Server = createServer((client) => this.accept(client));
  private readonly sockets = new Set<Socket>();
  private holding = false;
  /** Per connection, the coordinator's bytes kept while holding. */
  private readonly kept = new Map<Socket, Buffer[]>();
  /** Connections accepted: an agent that redials opens another. */
  accepted = 0;

  constructor(private readonly targetPort: number) {}

  async start(): Promise<number> {
    this.server.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    return (this.server.address() as AddressInfo).port;
  }

  /** From now, the coordinator's bytes are kept, not passed on. */
  hold(): void {
    this.holding = true;
  }

  /** Hands on every kept byte, in order on its own connection, and passes bytes straight through again. */
  release(): void {
    this.holding = false;
    for (const [client, chunks] of this.kept) for (const chunk of chunks.splice(0)) if (!client.destroyed) client.write(chunk);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: Socket): void {
    this.accepted++;
    const upstream = connect(this.targetPort, "127.0.0.1");
    const kept: Buffer[] = [];
    this.kept.set(client, kept);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(s);
        this.kept.delete(client);
      });
    }
    client.on("data", (chunk: Buffer) => upstream.write(chunk));
    upstream.on("data", (chunk: Buffer) => {
      if (this.holding) kept.push(chunk);
      else if (!client.destroyed) client.write(chunk);
    });
  }
}

describe("the agent's patience with a silent coordinator", () => {
  it("is Welcome.heartbeat_misses intervals, not three: a silence of 10 intervals with 50 allowed keeps the session", async () => {
    // 200 ms heartbeats, 50 misses: either side gives up after 10 s of silence.
    fx.srv = await startServer(fx.pki, { session: { heartbeatIntervalMs: 200, heartbeatMisses: 50 } });
    const relay = new OneWayHold(fx.srv.port);
    const relayPort = await relay.start();
    fx.defer(() => relay.stop());
    const agent = await fx.agent("patient", { address: `localhost:${relayPort}`, capabilities: ["work"], reconnectInitialMs: 20, reconnectMaxMs: 200 });
    const ends: SessionEnd[] = [];
    agent.on("disconnected", (end) => ends.push(end));
    const welcome = await agent.connect();
    expect(welcome.heartbeatMisses).toBe(50);
    void agent.run(async () => ({ ok: true }));

    relay.hold();
    // The deliberate stall, and its length is the point: 2 s is 10 intervals, past the 3 x 200 ms
    // an SDK that ignores heartbeat_misses allows, and far inside the 10 s the coordinator set.
    await new Promise((r) => setTimeout(r, 2000));
    relay.release();

    // The session still works: a task goes to this agent and its result comes back over it.
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    await control.submitTask({ task: { taskId: "t-after-silence", requiredCapabilities: ["work"] } });
    await waitForAsync(async () => (await control.getTask({ taskId: "t-after-silence" })).task?.state === TaskState.SUCCEEDED, 30_000, "the task to succeed on the agent after the silence");
    expect(ends).toEqual([]);
    expect(agent.session?.sessionId).toBe(welcome.sessionId);
    expect(relay.accepted).toBe(1);
    const task = (await control.getTask({ taskId: "t-after-silence" })).task!;
    expect(task.attempts.map((a) => a.outcome)).toEqual(["succeeded"]);
  });

  it("past heartbeat_misses intervals of silence, the agent gives up on the session and reconnects", async () => {
    // 200 ms heartbeats, 5 misses: 1 s of silence.
    fx.srv = await startServer(fx.pki, { session: { heartbeatIntervalMs: 200, heartbeatMisses: 5 } });
    const relay = new OneWayHold(fx.srv.port);
    const relayPort = await relay.start();
    fx.defer(() => relay.stop());
    const agent = await fx.agent("impatient", { address: `localhost:${relayPort}`, reconnectInitialMs: 20, reconnectMaxMs: 200 });
    await agent.connect();
    const startedAt = Date.now();
    const lost = once(agent, "disconnected") as Promise<[SessionEnd]>;
    relay.hold();
    const [end] = await lost;
    // Not before the 5 intervals it was given: silence counts from the last frame heard, which
    // can precede startedAt by the time the Welcome took to handle, so 900 ms, well past the old
    // rule's 3 intervals (600 ms).
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(900);
    expect(end.code).toBe(Code.UNAVAILABLE);
    expect(end.message).toMatch(/the coordinator sent nothing for \d+ ms \(5 heartbeat intervals of 200 ms\)/);
    const back = once(agent, "welcome");
    relay.release();
    await back;
    expect(relay.accepted).toBeGreaterThan(1);
  });
});
