import { describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { createAgent, type BatonAgent } from "../../src/agent/index.js";
import { Code } from "../../src/errors.js";
import { EventLog, topicMatches } from "../../src/events/index.js";
import { createChannel, createClient, type Channel } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

describe("topic patterns (AMQP topic exchange semantics)", () => {
  it.each([
    ["task.*.succeeded", "task.t1.succeeded", true],
    ["task.*.succeeded", "task.t1.pending", false],
    ["task.#", "task.t1.pending", true],
    ["#", "agent.a1.online", true],
    ["agent.a1.*", "agent.a1.offline", true],
    ["agent.a1.*", "agent.a2.offline", false],
    ["*.a1.#", "agent.a1.offline", true],
    ["task.*", "task.t1.pending", false],
    ["task.#.pending", "task.t1.pending", true],
  ])("%s ~ %s is %s", (pattern, topic, expected) => {
    expect(topicMatches(pattern, topic)).toBe(expected);
  });
});

describe("EventLog", () => {
  const append = (log: EventLog, topic: string) => log.append({ topic, correlationId: "", reason: "", kind: { case: undefined } });

  it("resumes after a cursor from what it retains, and refuses a cursor it no longer has", async () => {
    const log = new EventLog({ retain: 5 });
    for (let i = 1; i <= 8; i++) append(log, `task.t${i}.pending`);
    const ac = new AbortController();
    const got: bigint[] = [];
    const it = log.watch(["task.#"], 5n, ac.signal)[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) got.push((await it.next()).value!.cursor);
    expect(got).toEqual([6n, 7n, 8n]);
    ac.abort();
    expect(() => log.watch([], 1n, new AbortController().signal)).toThrow(expect.objectContaining({ code: Code.OUT_OF_RANGE }));
    expect(() => log.watch([], 99n, new AbortController().signal)).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT }));
    expect(() => log.watch(["task..x"], 0n, new AbortController().signal)).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT }));
  });

  it("retains exactly the last `retain` events however many came before (across its compactions)", async () => {
    const log = new EventLog({ retain: 5 });
    for (let n = 1; n <= 40; n++) {
      append(log, `task.t${n}.pending`);
      const oldest = BigInt(Math.max(1, n - 4));
      // Resuming right before the oldest retained event replays exactly the retained ones.
      const ac = new AbortController();
      const it = log.watch(["task.#"], oldest - 1n === 0n ? 0n : oldest - 1n, ac.signal)[Symbol.asyncIterator]();
      if (oldest > 1n) {
        const got: bigint[] = [];
        for (let i = 0; i < Number(BigInt(n) - oldest + 1n); i++) got.push((await it.next()).value!.cursor);
        expect(got).toEqual(Array.from({ length: got.length }, (_, i) => oldest + BigInt(i)));
        // One further back is gone.
        if (oldest > 2n) expect(() => log.watch([], oldest - 2n, new AbortController().signal)).toThrow(expect.objectContaining({ code: Code.OUT_OF_RANGE }));
      }
      ac.abort();
    }
  });

  it("ends a watcher that falls behind with RESOURCE_EXHAUSTED instead of buffering without bound", async () => {
    const log = new EventLog({ watcherCapacity: 10 });
    const stream = log.watch([], 0n, new AbortController().signal)[Symbol.asyncIterator]();
    for (let i = 0; i < 11; i++) append(log, "task.t.pending");
    await expect(stream.next()).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
  });
});

describe("Control.WatchEvents", () => {
  const fx = useFixture();

  it("streams task and agent state changes, filtered, and resumes from a cursor", async () => {
    fx.srv = await startServer(fx.pki);
    const ch: Channel = createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops"));
    fx.defer(() => ch.close());
    const control = createClient(Control, ch);
    const ac = new AbortController();
    const topics: string[] = [];
    const cursors: bigint[] = [];
    // The watch resumes after a marker event (matched by neither pattern), so it sees everything that
    // follows however late its registration lands: after_cursor 0 would be live only, racing the agent.
    const marker = fx.srv.server.events.append({ topic: "test.watch-start", correlationId: "", reason: "", kind: { case: undefined } }).cursor;
    const watching = (async () => {
      try {
        for await (const { event } of control.watchEvents({ topics: ["task.#", "agent.a1.*"], afterCursor: marker }, { signal: ac.signal })) {
          topics.push(event!.topic);
          cursors.push(event!.cursor);
        }
      } catch {
        /* cancelled */
      }
    })();
    const agent: BatonAgent = createAgent({ address: fx.srv.address, agentId: "a1", credentials: await fx.pki.credentials("managed_agent", "a1"), capabilities: ["work"] });
    fx.defer(() => agent.close({ flushMs: 100 }));
    await agent.connect();
    void agent.run(async () => ({}));
    await control.submitTask({ task: { taskId: "t1", requiredCapabilities: ["work"] } });
    await waitFor(() => topics.includes("task.t1.succeeded"), 30_000, "the task.t1.succeeded event");
    expect(topics).toEqual(["agent.a1.online", "task.t1.pending", "task.t1.assigned", "task.t1.running", "task.t1.succeeded"]);
    ac.abort();
    await watching;
    // A watcher that lost its stream resumes after the last cursor it saw.
    const resumed: string[] = [];
    for await (const { event } of control.watchEvents({ topics: ["task.*.*"], afterCursor: cursors[1]! }, { signal: AbortSignal.timeout(30_000) })) {
      resumed.push(event!.topic);
      if (resumed.length === 3) break;
    }
    expect(resumed).toEqual(["task.t1.assigned", "task.t1.running", "task.t1.succeeded"]);
    const task = await control.getTask({ taskId: "t1" });
    expect(task.task!.state).toBe(TaskState.SUCCEEDED);
  });

  it("a bad pattern is INVALID_ARGUMENT", async () => {
    fx.srv = await startServer(fx.pki);
    const ch: Channel = createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops"));
    fx.defer(() => ch.close());
    const control = createClient(Control, ch);
    await expect((async () => { for await (const _ of control.watchEvents({ topics: ["task..bad"] })) { /* none */ } })()).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
  });
});
