import { describe, expect, it } from "vitest";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { Control, ObstacleKind, TaskState, type ExplainTaskResponse, type Task } from "../../gen/baton/v1/control_pb.js";
import { createAgent, type AgentOptions, type BatonAgent } from "../../src/agent/index.js";
import type { ConfigOverrides } from "../../src/config.js";
import { Code } from "../../src/errors.js";
import { createChannel, createClient, type ServiceClient } from "../../src/rpc/index.js";
import { TcpProxy } from "../harness/tcp-proxy.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor, waitForAsync } from "../helpers/server.js";

const FAST: ConfigOverrides = {
  session: { heartbeatIntervalMs: 200, heartbeatMisses: 3, ackTimeoutMs: 300, disconnectGraceMs: 1500 },
  delivery: { retryCount: 3, backoffInitialMs: 20, backoffMaxMs: 100, leaseMs: 1500 },
  breaker: { resetTimeoutMs: 600 },
  tasks: { retryDelayMs: 10 },
};

const fx = useFixture();
let control: ServiceClient<typeof Control>;

async function start(overrides: ConfigOverrides = {}): Promise<void> {
  fx.srv = await startServer(fx.pki, { ...FAST, ...overrides });
  const ch = createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops"));
  fx.defer(() => ch.close());
  control = createClient(Control, ch);
}

async function agent(id: string, extra: Partial<AgentOptions> = {}, address = fx.srv.address): Promise<BatonAgent> {
  const a = createAgent({ address, agentId: id, credentials: await fx.pki.credentials("managed_agent", id), capabilities: ["work"], maxInFlight: 4, reconnectInitialMs: 50, reconnectMaxMs: 200, ...extra });
  fx.defer(() => a.close({ flushMs: 200 }));
  await a.connect();
  return a;
}

const submit = (taskId: string, extra: Record<string, unknown> = {}) => control.submitTask({ task: { taskId, requiredCapabilities: ["work"], input: { n: 1 }, ...extra } });
const task = async (id: string): Promise<Task> => (await control.getTask({ taskId: id })).task!;
const until = (id: string, state: TaskState, ms = 10_000) => pollTask(id, state, ms);

async function pollTask(id: string, state: TaskState, ms: number): Promise<Task> {
  const deadline = Date.now() + ms;
  for (;;) {
    const t = await task(id);
    if (t.state === state) return t;
    if (Date.now() > deadline) throw new Error(`task ${id} is ${TaskState[t.state]}, not ${TaskState[state]}: ${t.reason}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("tasks over acknowledged directives", () => {
  it("a submitted task runs once and succeeds; submitting the same id again is a no-op", async () => {
    await start();
    const effects: string[] = [];
    const a = await agent("a1");
    void a.run(async (d) => {
      effects.push(d.directiveId);
      return { done: true };
    });
    const first = await submit("t1");
    expect(first.created).toBe(true);
    expect((await submit("t1")).created).toBe(false);
    await expect(control.submitTask({ task: { taskId: "t1", requiredCapabilities: ["other"] } })).rejects.toMatchObject({ code: Code.ALREADY_EXISTS });
    const done = await until("t1", TaskState.SUCCEEDED);
    expect(done.result).toEqual({ done: true });
    expect(done.attempts.map((x) => x.outcome)).toEqual(["succeeded"]);
    expect(effects).toHaveLength(1);
    await waitFor(() => a.unacknowledgedCompletions === 0, 2000, "completion acknowledged");
  });

  it("directive_failed is retried, then dead-lettered with its history, and can be resubmitted", async () => {
    await start();
    let fail = true;
    const a = await agent("a1");
    void a.run(async () => {
      if (fail) throw new Error("boom");
      return { ok: 1 };
    });
    await submit("t1");
    const dead = await until("t1", TaskState.DEAD_LETTERED);
    expect(dead.attempts.map((x) => x.outcome)).toEqual(["directive_failed", "directive_failed", "directive_failed"]);
    expect(dead.attempts.every((x) => x.reason === "boom")).toBe(true);
    // Visible as a metric too.
    const metrics = await (await fetch(`http://127.0.0.1:${fx.srv.server.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/baton_task_attempt_outcomes_total\{outcome="directive_failed"\} 3/);
    expect(metrics).toMatch(/baton_tasks_dead_lettered_total 1/);
    expect(metrics).toMatch(/baton_tasks\{state="dead_lettered"\} 1/);
    // As an event on the fanout (Control.WatchEvents reads the same log).
    const events = fx.srv.server.events.watch(["task.t1.dead_lettered"], 1n, AbortSignal.timeout(1000))[Symbol.asyncIterator]();
    expect((await events.next()).value).toMatchObject({ topic: "task.t1.dead_lettered", reason: "directive_failed" });
    await events.return?.();
    // And as a log line per attempt, with the outcome named.
    expect(fx.srv.logs.lines.filter((l) => l.msg === "task attempt ended" && l.outcome === "directive_failed")).toHaveLength(3);
    const list = await control.listTasks({ states: [TaskState.DEAD_LETTERED] });
    expect(list.tasks.map((t) => t.spec!.taskId)).toEqual(["t1"]);
    fail = false;
    await control.resubmitTask({ taskId: "t1" });
    const ok = await until("t1", TaskState.SUCCEEDED);
    expect(ok.attempts.map((x) => x.outcome)).toEqual(["directive_failed", "directive_failed", "directive_failed", "resubmitted", "succeeded"]);
    await expect(control.resubmitTask({ taskId: "t1" })).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
  });

  it("a failure marked not retryable dead-letters at once", async () => {
    await start();
    const a = await agent("a1");
    void (async () => {
      for await (const r of a.directives()) {
        r.accept();
        r.fail({ code: "bad_input", message: "cannot parse", retryable: false });
      }
    })();
    await submit("t1");
    const dead = await until("t1", TaskState.DEAD_LETTERED);
    expect(dead.attempts).toHaveLength(1);
  });

  it("resource_conflict replans without spending an attempt", async () => {
    await start();
    let conflicts = 2;
    const a = await agent("a1");
    void (async () => {
      for await (const r of a.directives()) {
        r.accept();
        if (conflicts-- > 0) r.fail({ code: "resource_conflict", message: "cpu_core_1 taken" });
        else r.complete({ ok: true });
      }
    })();
    await submit("t1", { maxAttempts: 1 });
    const done = await until("t1", TaskState.SUCCEEDED);
    expect(done.attempts.map((x) => x.outcome)).toEqual(["resource_conflict", "resource_conflict", "succeeded"]);
  });

  it("a rejected directive goes to another agent and never back", async () => {
    await start();
    const seen: string[] = [];
    const picky = await agent("a1");
    void (async () => {
      for await (const r of picky.directives()) {
        seen.push("a1");
        r.reject("not mine");
      }
    })();
    await submit("t1", { target: { labels: { pool: "*" } } });
    // No agent has a pool label yet: the task waits.
    await new Promise((r) => setTimeout(r, 100));
    expect((await task("t1")).state).toBe(TaskState.PENDING);
    const other = await agent("a2", { labels: { pool: "blue" } });
    void other.run(async () => ({ by: "a2" }));
    const done = await until("t1", TaskState.SUCCEEDED);
    expect(done.result).toEqual({ by: "a2" });
    expect(seen).toEqual([]);
    await submit("t2");
    await waitFor(() => seen.length > 0 || undefined, 5000, "a1 saw t2").catch(() => undefined);
    const t2 = await until("t2", TaskState.SUCCEEDED);
    if (seen.length) {
      expect(t2.attempts[0]!.outcome).toBe("rejected");
      expect(t2.attempts.slice(1).every((x) => x.agents[0] === "a2")).toBe(true);
    }
  });

  it("a NAK (not now) is redelivered later", async () => {
    await start();
    let naks = 1;
    const a = await agent("a1");
    void (async () => {
      for await (const r of a.directives()) {
        if (naks-- > 0) r.defer("busy", 100);
        else {
          r.accept();
          r.complete({ ok: true });
        }
      }
    })();
    await submit("t1");
    const done = await until("t1", TaskState.SUCCEEDED);
    expect(done.attempts.map((x) => x.outcome)).toEqual(["deferred", "succeeded"]);
  });

  it("never exceeds the agent's in-flight cap", async () => {
    await start();
    let running = 0;
    let peak = 0;
    // Handlers hold at the gate until the test has seen the cap reached with more work waiting:
    // at any machine speed the first two are still running when the rest are ready to go.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    fx.defer(() => release());
    const a = await agent("a1", { maxInFlight: 2 });
    void a.run(async () => {
      peak = Math.max(peak, ++running);
      await gate;
      running--;
      return {};
    });
    const ids = Array.from({ length: 10 }, (_, i) => `t${i}`);
    const res = await control.submitTasks({ tasks: ids.map((taskId) => ({ taskId, requiredCapabilities: ["work"], input: { n: 1 } })) });
    expect(res.results.map((r) => r.code)).toEqual(ids.map(() => 0));
    await waitFor(() => running === 2 || undefined, 10_000, "two handlers held at the gate");
    // The other eight wait, and the planner has finished with one of them without placing it: no free slot on a1.
    const pending = (await control.listTasks({ states: [TaskState.PENDING] })).tasks.map((t) => t.spec!.taskId);
    expect(pending).toHaveLength(8);
    let why!: ExplainTaskResponse;
    await waitForAsync(async () => !/being planned/.test((why = await control.explainTask({ taskId: pending[0]! })).summary), 10_000, `${pending[0]} out of a planning round`);
    expect(why.task?.state).toBe(TaskState.PENDING);
    expect(why.agents.find((x) => x.agentId === "a1")?.obstacles.map((o) => o.kind)).toContain(ObstacleKind.NO_FREE_SLOT);
    expect(fx.srv.server.coordinator.pendingDirectives("a1")).toHaveLength(2);
    expect(running).toBe(2);
    expect(peak).toBe(2);
    release();
    for (const id of ids) await until(id, TaskState.SUCCEEDED);
    expect(peak).toBe(2);
  });

  it("cancellation reaches the agent and aborts its handler's signal", async () => {
    await start();
    const a = await agent("a1");
    let aborted: unknown;
    const started = new Promise<void>((resolve) => {
      void a.run(async (_d, ctx) => {
        resolve();
        await new Promise<void>((r) => ctx.signal.addEventListener("abort", () => r()));
        aborted = ctx.signal.reason;
        throw new Error("stopped");
      });
    });
    await submit("t1");
    await started;
    const res = await control.cancelTask({ taskId: "t1", reason: "no longer needed" });
    expect(res.task!.state).toBe(TaskState.CANCELLED);
    await waitFor(() => aborted, 3000, "handler aborted");
    expect(String((aborted as Error).message)).toMatch(/no longer needed/);
    await expect(control.cancelTask({ taskId: "t1" })).resolves.toBeDefined();
  });

  it("progress extends the lease; a task without progress past its lease is retried", async () => {
    // A lease far above the 100 ms between progress reports: a stall on a loaded machine does not expire a reporting run.
    const leaseMs = 3000;
    await start({ delivery: { ...FAST.delivery, leaseMs } });
    const runs = new Map<string, number>();
    let silentAbort: unknown;
    let talking = true;
    let stopTalking!: () => void;
    const talked = new Promise<void>((r) => (stopTalking = r));
    fx.defer(() => stopTalking());
    const a = await agent("a1");
    void a.run(async (d, ctx) => {
      const id = (d.parameters?.kind.value as { taskId: string }).taskId;
      const n = (runs.get(id) ?? 0) + 1;
      runs.set(id, n);
      if (id === "silent" && n === 1) {
        // No progress: it runs until the coordinator cancels it for its lease.
        await new Promise<void>((r) => (ctx.signal.aborted ? r() : ctx.signal.addEventListener("abort", () => r(), { once: true })));
        silentAbort = ctx.signal.reason;
        throw new Error("cancelled");
      }
      // Reports progress until the test has seen a lease run out, so it outlives its own first lease.
      for (let i = 0; id === "talkative" && talking; i++) {
        ctx.progress(Math.min(i, 99));
        await Promise.race([talked, new Promise((r) => setTimeout(r, 100))]);
        if (ctx.signal.aborted) throw new Error("cancelled");
      }
      return {};
    });
    await submit("talkative");
    await until("talkative", TaskState.RUNNING);
    // Accepted after talkative: its lease runs out no earlier than talkative's first one would have.
    await submit("silent");
    await waitForAsync(async () => (await task("silent")).attempts[0]?.outcome === "lease_expired", 20_000, "silent's first lease to expire");
    expect(String((await waitFor(() => silentAbort, 5000, "silent's run cancelled")) as Error)).toMatch(/lease expired/);
    const still = await task("talkative");
    expect(still.state).toBe(TaskState.RUNNING);
    expect(still.attempts.map((x) => x.outcome)).not.toContain("lease_expired");
    talking = false;
    stopTalking();
    const t = await until("talkative", TaskState.SUCCEEDED);
    expect(t.attempts.map((x) => x.outcome)).toEqual(["succeeded"]);
    const s = await until("silent", TaskState.SUCCEEDED);
    expect(s.attempts.map((x) => x.outcome)).toEqual(["lease_expired", "succeeded"]);
    expect(runs.get("talkative")).toBe(1);
  });
});

describe("agent failures", () => {
  it("an agent that stops acking is marked offline after its retries; its task completes elsewhere; it returns through half-open", async () => {
    await start();
    let acking = false;
    const mute = await agent("mute");
    void (async () => {
      for await (const r of mute.directives()) {
        if (acking) {
          r.accept();
          r.complete({ by: "mute" });
        }
      }
    })();
    await submit("t1", { target: { agentId: "mute" } });
    await waitFor(() => fx.srv.server.coordinator.agent("mute")!.state === AgentState.OFFLINE || undefined, 10_000, "mute offline");
    expect(fx.srv.server.coordinator.agent("mute")!.breaker.state).not.toBe("closed");
    const t1 = await task("t1");
    expect(t1.attempts[0]!.outcome).toBe("agent_unavailable");
    // Untargeted work goes to a healthy agent meanwhile.
    const helper = await agent("helper");
    void helper.run(async () => ({ by: "helper" }));
    await submit("t2");
    expect((await until("t2", TaskState.SUCCEEDED)).result).toEqual({ by: "helper" });
    // The breaker half-opens; one probe reaches the now-acking agent and closes it.
    acking = true;
    const t1done = await until("t1", TaskState.SUCCEEDED, 15_000);
    expect(t1done.result).toEqual({ by: "mute" });
    await waitFor(() => fx.srv.server.coordinator.agent("mute")!.breaker.state === "closed" || undefined, 5000, "breaker closed");
    expect(fx.srv.server.coordinator.agent("mute")!.state).toBe(AgentState.ONLINE);
  });

  it("a cut connection resumes the session: directives are replayed, each takes effect once", async () => {
    // Room to resume on a loaded machine: this test is about replay on resume, not about timeouts.
    await start({ session: { ...FAST.session, heartbeatMisses: 6, disconnectGraceMs: 5000 }, delivery: { ...FAST.delivery, leaseMs: 5000 } });
    const proxy = new TcpProxy({ target: { host: "127.0.0.1", port: fx.srv.port } });
    await proxy.start();
    fx.defer(() => proxy.stop());
    const effects = new Map<string, number>();
    const a = await agent("a1", {}, `localhost:${proxy.port}`);
    const welcomes: boolean[] = [];
    a.on("welcome", (w) => welcomes.push(w.resumed));
    void a.run(async (d, ctx) => {
      effects.set(d.directiveId, (effects.get(d.directiveId) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 50));
      ctx.progress(50);
      return {};
    });
    for (let i = 0; i < 20; i++) {
      await submit(`t${i}`);
      if (i % 5 === 4) proxy.cut();
    }
    for (let i = 0; i < 20; i++) await until(`t${i}`, TaskState.SUCCEEDED, 20_000);
    expect(welcomes.filter((r) => r).length).toBeGreaterThan(0);
    expect([...effects.values()].every((n) => n === 1)).toBe(true);
  });

  it("an agent that does not return within the grace period is lost: its work is replanned (a re-execution)", async () => {
    await start();
    const proxy = new TcpProxy({ target: { host: "127.0.0.1", port: fx.srv.port } });
    await proxy.start();
    fx.defer(() => proxy.stop());
    const doomed = await agent("doomed", {}, `localhost:${proxy.port}`);
    const started = new Promise<void>((resolve) => void doomed.run(async () => {
      resolve();
      await new Promise((r) => setTimeout(r, 60_000));
      return {};
    }));
    await submit("t1");
    await started;
    await until("t1", TaskState.RUNNING);
    proxy.refuse();
    proxy.cut();
    await waitFor(() => fx.srv.server.coordinator.agent("doomed")!.state === AgentState.DISCONNECTED || undefined, 5000, "disconnected");
    const survivor = await agent("survivor");
    void survivor.run(async () => ({ by: "survivor" }));
    const done = await until("t1", TaskState.SUCCEEDED, 10_000);
    expect(done.result).toEqual({ by: "survivor" });
    expect(done.attempts[0]).toMatchObject({ outcome: "agent_unavailable", agents: ["doomed"] });
    expect(done.attempts[0]!.reason).toMatch(/re-execution/);
    expect(fx.srv.server.coordinator.agent("doomed")!.state).toBe(AgentState.OFFLINE);
    const metrics = await (await fetch(`http://127.0.0.1:${fx.srv.server.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/baton_agent_unavailable_total\{agent="doomed"\} 1/);
  });
});
