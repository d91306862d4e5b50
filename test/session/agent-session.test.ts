import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import type { ChannelCredentials, ServiceError } from "@grpc/grpc-js";
import { Action, AgentState } from "../../gen/baton/v1/common_pb.js";
import { AckOutcome, CompletionStatus } from "../../gen/baton/v1/coordination_pb.js";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { Coordinator as CoordinatorService } from "../../gen/baton/v1/session_pb.js";
import type { AgentOptions } from "../../src/agent/index.js";
import { Code } from "../../src/errors.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

const agent = (id: string, extra: Partial<AgentOptions> = {}) => fx.agent(id, { capabilities: ["python"], maxInFlight: 4, ...extra });
const channel = (creds: ChannelCredentials) => fx.channel(creds);

describe("agent session over mutual TLS", () => {
  it("welcomes an agent and lists it as online", async () => {
    fx.srv = await startServer(fx.pki);
    const a = await agent("task_executor_1", { labels: { zone: "a" } });
    const welcome = await a.connect();
    expect(welcome.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(welcome.maxInFlight).toBe(4);
    expect(welcome.protocolVersion).toBe("1.0.0");
    const control = createClient(Control, channel(await fx.pki.credentials("operator", "ops")));
    const { agents } = await control.listAgents({});
    expect(agents.map((x) => [x.agentId, x.state, x.identity])).toEqual([["task_executor_1", AgentState.ONLINE, "spiffe://baton.local/managed_agent/task_executor_1"]]);
    expect(agents[0]!.labels).toEqual({ zone: "a" });
  });

  it("round-trips an AgentStatusRequest with a deadline", async () => {
    fx.srv = await startServer(fx.pki);
    const a = await agent("task_executor_1", { utilization: () => 0.25, metrics: () => ({ queue_depth: 3 }) });
    await a.connect();
    const { response, roundTripMs } = await fx.srv.server.coordinator.requestStatus("task_executor_1", { timeoutMs: 2000 });
    expect(response.sourceAgent).toBe("task_executor_1");
    expect(response.resourceUtilization).toBe(0.25);
    expect(response.metrics).toEqual({ queue_depth: 3 });
    expect(roundTripMs).toBeGreaterThan(0);
    // Through Control, as an operator would.
    const control = createClient(Control, channel(await fx.pki.credentials("operator", "ops")));
    const viaControl = await control.getAgentStatus({ agentId: "task_executor_1", timeoutMs: 2000 });
    expect(viaControl.status?.sourceAgent).toBe("task_executor_1");
  });

  it("a status request to an agent that does not answer ends in DEADLINE_EXCEEDED", async () => {
    fx.srv = await startServer(fx.pki);
    // A raw client that says hello and then never answers.
    const client = createClient(CoordinatorService, channel(await fx.pki.credentials("managed_agent", "mute")));
    const frames = client.connect(
      (async function* () {
        yield { kind: { case: "hello" as const, value: { agentId: "mute" } } };
        await sleep(5000);
      })(),
    );
    const it = frames[Symbol.asyncIterator]();
    expect((await it.next()).value?.kind.case).toBe("welcome");
    await expect(fx.srv.server.coordinator.requestStatus("mute", { timeoutMs: 200 })).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    await it.return?.();
  });

  it("delivers a directive; the handler's result comes back as a TaskCompletion and is acknowledged", async () => {
    fx.srv = await startServer(fx.pki);
    const a = await agent("task_executor_1");
    await a.connect();
    const seen: string[] = [];
    void a.run(async (directive, ctx) => {
      seen.push(directive.directiveId);
      ctx.progress(50);
      return { answer: 42 };
    });
    const coordinator = fx.srv.server.coordinator;
    const acks: AckOutcome[] = [];
    coordinator.on("directive.ack", (ack) => acks.push(ack.outcome));
    const progress: number[] = [];
    coordinator.on("directive.progress", (u) => progress.push(u.metrics!.completionPercentage));
    const completed = new Promise<import("../../gen/baton/v1/coordination_pb.js").TaskCompletion>((resolve) => coordinator.once("directive.completed", (c) => resolve(c)));
    const directive = coordinator.sendDirective("task_executor_1", {
      action: Action.ASSIGN_TASK,
      parameters: { kind: { case: "assignTask", value: { taskId: "task_123", resources: ["cpu_core_1"] } } },
    });
    expect(directive.sequence).toBe(1n);
    const completion = await completed;
    expect(seen).toEqual([directive.directiveId]);
    expect(completion.status).toBe(CompletionStatus.SUCCEEDED);
    expect(completion.result).toEqual({ answer: 42 });
    expect(completion.taskId).toBe("task_123");
    expect(acks).toEqual([AckOutcome.ACCEPTED]);
    expect(progress).toEqual([50]);
    await waitFor(() => coordinator.pendingDirectives().length === 0, 2000, "directive settled");
    // Every protocol message logged with the spec's fields.
    const lines = fx.srv.logs.lines.filter((l) => l.message_type);
    const types = new Set(lines.map((l) => l.message_type));
    for (const t of ["coordination_directive", "directive_ack", "progress_update", "task_completion", "completion_ack"]) expect(types).toContain(t);
    for (const l of lines) {
      expect(l).toMatchObject({ correlation_id: expect.any(String), source: expect.any(String), destination: expect.any(String), timestamp: expect.any(String) });
    }
    const directiveLine = lines.find((l) => l.message_type === "coordination_directive")!;
    expect(directiveLine).toMatchObject({ source: "baton-coordinator", destination: "task_executor_1", correlation_id: directive.correlationId });
  });

  it("a handler that throws reports a failed completion", async () => {
    fx.srv = await startServer(fx.pki);
    const a = await agent("task_executor_1");
    await a.connect();
    void a.run(async () => {
      throw new Error("disk full");
    });
    const completed = new Promise<import("../../gen/baton/v1/coordination_pb.js").TaskCompletion>((resolve) => fx.srv.server.coordinator.once("directive.completed", (c) => resolve(c)));
    fx.srv.server.coordinator.sendDirective("task_executor_1", { action: Action.ASSIGN_TASK, parameters: { kind: { case: "assignTask", value: { taskId: "t" } } } });
    const c = await completed;
    expect(c.status).toBe(CompletionStatus.FAILED);
    expect(c.error?.message).toBe("disk full");
  });

  it("directives can be consumed as an async iterable and rejected", async () => {
    fx.srv = await startServer(fx.pki);
    const a = await agent("task_executor_1");
    await a.connect();
    const acked = new Promise<import("../../gen/baton/v1/coordination_pb.js").DirectiveAck>((resolve) => fx.srv.server.coordinator.once("directive.ack", (ack) => resolve(ack)));
    const d = fx.srv.server.coordinator.sendDirective("task_executor_1", { action: Action.ASSIGN_TASK, parameters: { kind: { case: "assignTask", value: { taskId: "t" } } } });
    for await (const received of a.directives()) {
      expect(received.directive.directiveId).toBe(d.directiveId);
      received.reject("not my kind of work");
      break;
    }
    const ack = await acked;
    expect(ack.outcome).toBe(AckOutcome.REJECTED);
    expect(ack.reason).toBe("not my kind of work");
  });

  it("never exceeds the agent's in-flight cap", async () => {
    fx.srv = await startServer(fx.pki);
    const a = await agent("task_executor_1", { maxInFlight: 2 });
    await a.connect();
    const send = () => fx.srv.server.coordinator.sendDirective("task_executor_1", { action: Action.ASSIGN_TASK, parameters: { kind: { case: "assignTask", value: { taskId: "t" } } } });
    send();
    send();
    expect(send).toThrow(expect.objectContaining({ code: Code.RESOURCE_EXHAUSTED }));
  });

  it("a second session for the same agent replaces the first cleanly", async () => {
    fx.srv = await startServer(fx.pki);
    const first = await agent("task_executor_1");
    const w1 = await first.connect();
    const second = await agent("task_executor_1");
    const w2 = await second.connect();
    expect(w2.sessionId).not.toBe(w1.sessionId);
    const end = await first.done;
    expect(end.code).toBe(Code.ABORTED);
    expect(end.message).toMatch(/replaced/);
    const entry = fx.srv.server.coordinator.agent("task_executor_1")!;
    expect(entry.session?.sessionId).toBe(w2.sessionId);
    expect(entry.state).toBe(AgentState.ONLINE);
    const { response } = await fx.srv.server.coordinator.requestStatus("task_executor_1", { timeoutMs: 2000 });
    expect(response.sourceAgent).toBe("task_executor_1");
  });

  it("heartbeats flow both ways and a silent agent is closed", async () => {
    // 50 misses of 100 ms: a silent client is dropped after 5 s, while a healthy agent survives any
    // stall of a loaded machine short of that (3 misses, 300 ms, dropped it after one such stall).
    fx.srv = await startServer(fx.pki, { session: { heartbeatIntervalMs: 100, heartbeatMisses: 50 } });
    const a = await agent("task_executor_1");
    await a.connect();
    const entry = fx.srv.server.coordinator.agent("task_executor_1")!;
    const before = entry.session!.lastSeen;
    await waitFor(() => fx.srv.server.coordinator.agent("task_executor_1")!.lastSeen > before, 30_000, "agent heartbeat");
    // A raw client that never sends heartbeats is closed after the missed intervals; its request
    // stream stays open (no end of stream) until the test ends, so only the silence can close it.
    let endRequests!: () => void;
    const requestsOpen = new Promise<void>((r) => (endRequests = r));
    fx.defer(() => endRequests());
    const client = createClient(CoordinatorService, channel(await fx.pki.credentials("managed_agent", "silent")));
    const frames = client.connect(
      (async function* () {
        yield { kind: { case: "hello" as const, value: { agentId: "silent" } } };
        await requestsOpen;
      })(),
    );
    const kinds: string[] = [];
    const err = await (async () => {
      try {
        for await (const f of frames) kinds.push(f.kind.case ?? "");
      } catch (e) {
        return e as ServiceError;
      }
      return undefined;
    })();
    expect(kinds[0]).toBe("welcome");
    expect(kinds).toContain("heartbeat");
    expect(err?.code).toBe(Code.UNAVAILABLE);
    expect(err?.details).toMatch(/no heartbeat/);
    // The healthy agent was not affected.
    expect(fx.srv.server.coordinator.agent("task_executor_1")!.state).toBe(AgentState.ONLINE);
  });

  it("closes cleanly on AbortSignal, and the coordinator marks the agent disconnected", async () => {
    fx.srv = await startServer(fx.pki);
    const controller = new AbortController();
    const a = await agent("task_executor_1", { signal: controller.signal });
    await a.connect();
    controller.abort();
    const end = await a.done;
    expect(end.code).toBe(Code.OK);
    await waitFor(() => fx.srv.server.coordinator.agent("task_executor_1")!.state === AgentState.DISCONNECTED, 2000, "disconnected");
  });

  it("drains an agent through Control: it is told, and takes no new work", async () => {
    fx.srv = await startServer(fx.pki);
    const a = await agent("task_executor_1");
    await a.connect();
    const drained = new Promise<import("../../gen/baton/v1/session_pb.js").Drain>((resolve) => a.once("drain", resolve));
    const control = createClient(Control, channel(await fx.pki.credentials("operator", "ops")));
    const res = await control.drainAgent({ agentId: "task_executor_1", reason: "maintenance" });
    expect(res.agent?.state).toBe(AgentState.DRAINING);
    expect((await drained).reason).toBe("maintenance");
    expect(() => fx.srv.server.coordinator.sendDirective("task_executor_1", { action: Action.ASSIGN_TASK, parameters: { kind: { case: "assignTask", value: { taskId: "t" } } } })).toThrow(expect.objectContaining({ code: Code.FAILED_PRECONDITION }));
  });

  it("undrains an agent through Control: the task that waited for it is placed on it", async () => {
    fx.srv = await startServer(fx.pki);
    const a = await agent("task_executor_1", { capabilities: ["work"] });
    await a.connect();
    const ran: string[] = [];
    void a.run(async (d) => {
      ran.push(d.parameters?.kind.case === "assignTask" ? d.parameters.kind.value.taskId : "");
      return {};
    });
    const control = createClient(Control, channel(await fx.pki.credentials("operator", "ops")));
    await control.drainAgent({ agentId: "task_executor_1", reason: "maintenance" });
    await control.submitTask({ task: { taskId: "after-drain", requiredCapabilities: ["work"] } });
    // Drained, the only agent that could run it gets nothing.
    const explained = await control.explainTask({ taskId: "after-drain" });
    expect(JSON.stringify(explained, (_k, v) => (typeof v === "bigint" ? String(v) : v))).toMatch(/draining/);
    expect(ran).toEqual([]);
    const withdrawn = new Promise<void>((resolve) => a.on("drain", (d) => d.withdrawn && resolve()));
    const res = await control.undrainAgent({ agentId: "task_executor_1" });
    expect(res.agent?.state).toBe(AgentState.ONLINE);
    // The agent is told its drain is withdrawn.
    await withdrawn;
    await waitFor(() => ran.includes("after-drain"), 20_000, "the task placed on the undrained agent");
    // Again: nothing to do, the same answer.
    expect((await control.undrainAgent({ agentId: "task_executor_1" })).agent?.state).toBe(AgentState.ONLINE);
    await expect(control.undrainAgent({ agentId: "nobody" })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    await expect(control.undrainAgent({ agentId: "" })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
  });
});
