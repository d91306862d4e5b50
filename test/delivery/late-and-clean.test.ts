import { describe, expect, it } from "vitest";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { Control, TaskState, type Task } from "../../gen/baton/v1/control_pb.js";
import type { AgentOptions, BatonAgent } from "../../src/agent/index.js";
import type { ConfigOverrides } from "../../src/config.js";
import { createClient, type ServiceClient } from "../../src/rpc/index.js";
import { TcpProxy } from "../harness/tcp-proxy.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

// A short grace and a long breaker reset: a tripped breaker would show as a long wait.
// The losses here are seen by TCP (the proxy's cut() resets both sides; close() half-closes),
// so sessions may be silent 3 x 2 s before either side gives up: a loaded machine's stall
// cannot drop an agent that should keep its session (the "other" agent below, whose attempt
// would then close as agent_unavailable). Now and then the cut agent does not see its reset
// and finds out by the coordinator's silence, 6 s later: inside the 30 s waits.
const SETTINGS: ConfigOverrides = {
  session: { heartbeatIntervalMs: 2000, heartbeatMisses: 3, disconnectGraceMs: 400 },
  breaker: { resetTimeoutMs: 120_000 },
  tasks: { retryDelayMs: 10 },
};

const fx = useFixture();
let control: ServiceClient<typeof Control>;

async function start(): Promise<void> {
  fx.srv = await startServer(fx.pki, SETTINGS);
  control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
}

async function agent(id: string, address = fx.srv.address, extra: Partial<AgentOptions> = {}): Promise<BatonAgent> {
  const a = await fx.agent(id, { address, capabilities: ["work"], reconnectInitialMs: 50, reconnectMaxMs: 200, ...extra });
  await a.connect();
  return a;
}

const task = async (id: string): Promise<Task> => (await control.getTask({ taskId: id })).task!;
async function until(id: string, test: (t: Task) => boolean, what: string, ms = 30_000): Promise<Task> {
  const deadline = Date.now() + ms;
  for (;;) {
    const t = await task(id);
    if (test(t)) return t;
    if (Date.now() > deadline) throw new Error(`task ${id} is ${TaskState[t.state]} (${t.reason}); waited for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An agent behind a proxy whose handler holds until `finish()`; `started` resolves when it runs. */
async function heldAgent(id: string) {
  const proxy = new TcpProxy({ target: { host: "127.0.0.1", port: fx.srv.port } });
  await proxy.start();
  fx.defer(() => proxy.stop());
  const a = await agent(id, `localhost:${proxy.port}`);
  let finish!: () => void;
  const gate = new Promise<void>((r) => (finish = r));
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  void a.run(async () => {
    started();
    await gate;
    return { by: id };
  });
  return { proxy, agent: a, finish, running };
}

describe("a result that arrives after its attempt was closed", () => {
  it("is the task's result when no other attempt runs, and its attempt record says it succeeded late", async () => {
    await start();
    const late = await heldAgent("late");
    await control.submitTask({ task: { taskId: "t-late", requiredCapabilities: ["work"] } });
    await late.running;
    // The agent's connection dies and it stays away past the grace period.
    late.proxy.refuse();
    late.proxy.cut();
    await until("t-late", (t) => t.attempts.at(-1)?.outcome === "agent_unavailable", "the attempt to close as agent_unavailable");
    // It comes back with its result.
    late.finish();
    late.proxy.heal();
    const done = await until("t-late", (t) => t.state === TaskState.SUCCEEDED, "the late result to settle the task");
    expect(done.result).toEqual({ by: "late" });
    expect(done.attempts).toHaveLength(1);
    expect(done.attempts[0]!.outcome).toBe("succeeded");
    expect(done.attempts[0]!.reason).toMatch(/after the attempt was closed as agent_unavailable/);
  });

  it("is not used while another attempt of the task is running; that attempt's result wins", async () => {
    await start();
    const late = await heldAgent("late");
    await control.submitTask({ task: { taskId: "t-race", requiredCapabilities: ["work"] } });
    await late.running;
    late.proxy.refuse();
    late.proxy.cut();
    await until("t-race", (t) => t.attempts.at(-1)?.outcome === "agent_unavailable", "the attempt to close as agent_unavailable");
    // Another agent takes the retry and runs it.
    const other = await heldAgent("other");
    await other.running;
    await until("t-race", (t) => t.state === TaskState.RUNNING, "the second attempt to run");
    late.finish();
    late.proxy.heal();
    await until("t-race", (t) => /arrived late, from late/.test(t.attempts[0]!.reason), "the late result to be noted on its attempt");
    expect((await task("t-race")).state).toBe(TaskState.RUNNING);
    other.finish();
    const done = await until("t-race", (t) => t.state === TaskState.SUCCEEDED, "the running attempt to finish");
    expect(done.result).toEqual({ by: "other" });
    expect(done.attempts.map((a) => a.outcome)).toEqual(["agent_unavailable", "succeeded"]);
  });
});

describe("an agent that closes cleanly", () => {
  it("is not counted a failure: back after the grace period, it gets work at once", async () => {
    await start();
    const first = await agent("tidy");
    await first.close();
    // Gone past the grace period: offline, but its breaker stays closed.
    await waitFor(() => fx.srv.server.coordinator.agent("tidy")?.state === AgentState.OFFLINE, 20_000, "the agent to be marked offline");
    expect(fx.srv.server.coordinator.agent("tidy")?.breaker.state).toBe("closed");
    const again = await agent("tidy");
    void again.run(async () => ({ ok: true }));
    await waitFor(() => fx.srv.server.coordinator.agent("tidy")?.state === AgentState.ONLINE, 20_000, "the returning agent to be online");
    await control.submitTask({ task: { taskId: "t-tidy", requiredCapabilities: ["work"] } });
    // Well inside the two-minute breaker reset: a tripped breaker would hold it.
    await until("t-tidy", (t) => t.state === TaskState.SUCCEEDED, "the task to run on the returning agent", 30_000);
  });
});
