// Clock skew between an agent and the coordinator (issue 10, item 12): signed batches carry
// a timestamp that must fall inside the replay window, so a skewed clock is refused, and
// the refusal must say so clearly on both sides and be seen by the operator.
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { durationMs, timestampMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { AgentStatusResponseSchema } from "../../gen/baton/v1/coordination_pb.js";
import { Control, TaskState, type Task } from "../../gen/baton/v1/control_pb.js";
import type { AgentReport } from "../../gen/baton/v1/session_pb.js";
import { ClockSkewError } from "../../src/agent/index.js";
import { Code } from "../../src/errors.js";
import { createLogger } from "../../src/logging.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { openRawSession, type RawSession } from "../helpers/raw-session.js";
import { LogCapture, startServer, waitFor } from "../helpers/server.js";

const MINUTE = 60_000;
const fx = useFixture();

/** A clock `ms` away from the real one; tests move it to simulate a skewed or jumping clock. */
function skewedClock(ms: number): { ms: number; now: () => number } {
  const clock = { ms, now: () => Date.now() + clock.ms };
  return clock;
}

async function raw(agentId: string, now?: () => number): Promise<RawSession> {
  const s = await openRawSession(fx.srv.address, await fx.pki.credentials("managed_agent", agentId), agentId, now ? { now } : {});
  fx.defer(() => s.close());
  return s;
}

async function operator() {
  return createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
}

function statusReport(agentId: string): AgentReport {
  return { $typeName: "baton.v1.AgentReport", kind: { case: "statusResponse", value: create(AgentStatusResponseSchema, { requestId: randomUUID(), timestamp: timestampNow(), sourceAgent: agentId }) } };
}

/** Resolves when the coordinator reports the task in `state`. */
function taskReaches(taskId: string, state: TaskState): Promise<void> {
  const coordinator = fx.srv.server.coordinator;
  return new Promise((resolve) => {
    const onTask = (task: Task) => {
      if (task.spec?.taskId !== taskId || task.state !== state) return;
      coordinator.off("task.updated", onTask);
      resolve();
    };
    coordinator.on("task.updated", onTask);
  });
}

async function skewRefusals(): Promise<number> {
  const metric = fx.srv.server.registry.getSingleMetric("baton_clock_skew_refusals_total");
  if (!metric) return -1;
  return (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);
}

/** The server's clock-skew warnings about one agent. */
function skewWarnings(agentId: string): Array<Record<string, unknown>> {
  return fx.srv.logs.lines.filter((l) => l.level === "warn" && l.agent_id === agentId && typeof l.skew_ms === "number");
}

describe("clock skew, seen by the coordinator", () => {
  it("a raw agent 6 minutes ahead is refused UNAUTHENTICATED, logged at warn with its skew, counted, and shown on GetAgent", async () => {
    fx.srv = await startServer(fx.pki);
    const clock = skewedClock(6 * MINUTE);
    const s = await raw("fast_raw", clock.now);
    // Whether refused at Hello or at its first signed batch, a batch stamped by its clock must not pass.
    if (s.keyring) s.send({ kind: { case: "signedReports", value: s.signedReports([statusReport("fast_raw")]) } });
    const end = await s.ended;
    expect(end.code).toBe(Code.UNAUTHENTICATED);
    expect(end.details).toMatch(/clock skew/);
    const [warning] = await waitFor(() => skewWarnings("fast_raw").length > 0 && skewWarnings("fast_raw"), 10_000, "the clock-skew warning");
    expect(warning!.skew_ms as number).toBeGreaterThan(5.9 * MINUTE);
    expect(warning!.skew_ms as number).toBeLessThanOrEqual(6 * MINUTE + 1000);
    expect(await skewRefusals()).toBe(1);
    const { agent } = await (await operator()).getAgent({ agentId: "fast_raw" });
    expect(agent?.state).not.toBe(AgentState.ONLINE);
    expect(durationMs(agent!.clockSkew!)).toBeGreaterThan(5.9 * MINUTE);
    expect(agent?.stateReason).toMatch(/clock skew/);
  });

  it("a signed batch 6 minutes ahead on an open session (a clock that jumped) is a clock-skew refusal; a replayed id is not counted as one", async () => {
    fx.srv = await startServer(fx.pki);
    const s = await raw("jumpy_raw");
    s.send({ kind: { case: "signedReports", value: s.signedReports([statusReport("jumpy_raw")], { sentAtMs: Date.now() + 6 * MINUTE }) } });
    const end = await s.ended;
    expect(end.code).toBe(Code.UNAUTHENTICATED);
    expect(end.details).toMatch(/clock skew/);
    expect(end.details).toMatch(/in the future/);
    await waitFor(() => skewWarnings("jumpy_raw").length > 0, 10_000, "the clock-skew warning");
    expect(await skewRefusals()).toBe(1);
    const { agent } = await (await operator()).getAgent({ agentId: "jumpy_raw" });
    expect(durationMs(agent!.clockSkew!)).toBeGreaterThan(5.9 * MINUTE);
    expect(agent?.stateReason).toMatch(/clock skew/);

    // Another refusal of the replay guard is no clock skew.
    const r = await raw("replayer");
    const env = r.signedReports([statusReport("replayer")]);
    r.send({ kind: { case: "signedReports", value: env } });
    r.send({ kind: { case: "signedReports", value: env } });
    expect((await r.ended).code).toBe(Code.UNAUTHENTICATED);
    expect(await skewRefusals()).toBe(1);
    expect(skewWarnings("replayer")).toHaveLength(0);
  });

  it("Welcome tells the agent the coordinator's time and replay window", async () => {
    fx.srv = await startServer(fx.pki);
    const before = Date.now();
    const s = await raw("curious_raw");
    expect(timestampMs(s.welcome.serverTime!)).toBeGreaterThanOrEqual(before - 1000);
    expect(timestampMs(s.welcome.serverTime!)).toBeLessThanOrEqual(Date.now() + 1000);
    expect(durationMs(s.welcome.replayWindow!)).toBe(fx.srv.config.security.replayWindowMs);
  });
});

describe("clock skew, seen by the SDK", () => {
  it("an SDK agent 6 minutes ahead: connect() rejects with the skew, its task stays PENDING, and the operator sees the skew", async () => {
    fx.srv = await startServer(fx.pki);
    const control = await operator();
    await control.submitTask({ task: { taskId: "for-fast-sdk", requiredCapabilities: ["python"], target: { agentId: "fast_sdk" } } });
    const clock = skewedClock(6 * MINUTE);
    const logs = new LogCapture();
    const a = await fx.agent("fast_sdk", { capabilities: ["python"], now: clock.now, logger: createLogger({ level: "warn", destination: logs }) });
    const error = await a.connect().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(ClockSkewError);
    const skew = error as ClockSkewError;
    expect(skew.code).toBe(Code.UNAUTHENTICATED);
    expect(skew.skewMs).toBeGreaterThan(5.9 * MINUTE);
    expect(skew.message).toMatch(/clock/);
    expect(skew.message).toContain(`${skew.skewMs} ms`);
    expect(logs.lines.some((l) => l.level === "warn" && l.skew_ms === skew.skewMs)).toBe(true);
    // Final: the agent does not reconnect.
    expect((await a.done).code).toBe(Code.UNAUTHENTICATED);
    const { task } = await control.getTask({ taskId: "for-fast-sdk" });
    expect(task?.state).toBe(TaskState.PENDING);
    const { agent } = await control.getAgent({ agentId: "fast_sdk" });
    expect(agent?.state).not.toBe(AgentState.ONLINE);
    expect(durationMs(agent!.clockSkew!)).toBeGreaterThan(5.9 * MINUTE);
    expect(agent?.stateReason).toMatch(/clock skew/);
  });

  it("an SDK agent 2 minutes behind (inside the 5 min window) connects, warns, and completes work", async () => {
    fx.srv = await startServer(fx.pki);
    expect(fx.srv.config.security.replayWindowMs).toBe(5 * MINUTE);
    const logs = new LogCapture();
    const clock = skewedClock(-2 * MINUTE);
    const a = await fx.agent("slow_sdk", { capabilities: ["python"], now: clock.now, logger: createLogger({ level: "warn", destination: logs }) });
    await a.connect();
    const warning = logs.lines.find((l) => l.level === "warn" && typeof l.skew_ms === "number");
    expect(warning?.skew_ms as number).toBeLessThan(-1.9 * MINUTE);
    void a.run(async () => ({ ok: true }));
    const control = await operator();
    const succeeded = taskReaches("for-slow-sdk", TaskState.SUCCEEDED);
    await control.submitTask({ task: { taskId: "for-slow-sdk", requiredCapabilities: ["python"], target: { agentId: "slow_sdk" } } });
    await succeeded;
    const { agent } = await control.getAgent({ agentId: "slow_sdk" });
    expect(agent?.state).toBe(AgentState.ONLINE);
    expect(durationMs(agent!.clockSkew!)).toBeLessThan(-1.9 * MINUTE);
    expect(agent?.stateReason).toBe("");
  });

  it("when the agent's clock jumps 6 minutes after connect, the SDK's refusal of the coordinator's batch says clock skew, not a stale coordinator", async () => {
    fx.srv = await startServer(fx.pki);
    const clock = skewedClock(0);
    const a = await fx.agent("jumpy_sdk", { capabilities: ["python"], now: clock.now });
    await a.connect();
    void a.run(async () => ({ ok: true }));
    clock.ms = 6 * MINUTE;
    await (await operator()).submitTask({ task: { taskId: "for-jumpy-sdk", requiredCapabilities: ["python"], target: { agentId: "jumpy_sdk" } } });
    const end = await a.done;
    expect(end.code).toBe(Code.UNAUTHENTICATED);
    expect(end.message).toMatch(/clock skew/);
    expect(end.message).toMatch(/this agent's clock/);
  });
});
