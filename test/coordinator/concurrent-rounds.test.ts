import { setTimeout as sleep } from "node:timers/promises";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { Control, CoordinationState, TaskState } from "../../gen/baton/v1/control_pb.js";
import { Coordinator as CoordinatorService, type ConnectRequest } from "../../gen/baton/v1/session_pb.js";
import { createAgent } from "../../src/agent/index.js";
import { createAsyncQueue } from "../../src/streams/index.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

describe("concurrent coordination rounds", () => {
  it("a round waiting on a slow agent does not hold up a round over other agents", async () => {
    // The round's status wait is min(statusTimeoutMs, ackTimeoutMs): both far beyond the test, so only
    // the test's gate decides when the slow agent answers, however slow the machine.
    fx.srv = await startServer(fx.pki, { session: { statusTimeoutMs: 60_000, ackTimeoutMs: 60_000 } });
    const ops = createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops"));
    fx.defer(() => ops.close());
    const control = createClient(Control, ops);
    // A slow agent: answers status requests only once the test opens the gate (after its assertions).
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    fx.defer(() => openGate());
    const out = createAsyncQueue<ConnectRequest | Record<string, unknown>>({ capacity: 100, overflow: "error" });
    out.push({ kind: { case: "hello", value: { agentId: "slow", capabilities: ["slow"] } } });
    const slowCh = createChannel(fx.srv.address, await fx.pki.credentials("managed_agent", "slow"));
    fx.defer(() => slowCh.close());
    const frames = createClient(CoordinatorService, slowCh).connect(out as AsyncIterable<never>);
    fx.defer(() => out.close());
    // Heartbeats keep the hand-driven session alive however long the test takes on a loaded machine.
    const beat = setInterval(() => out.push({ kind: { case: "heartbeat", value: { sentAt: timestampNow() } } }), 1000);
    fx.defer(() => clearInterval(beat));
    void (async () => {
      for await (const f of frames) {
        if (f.kind.case !== "messages") continue;
        for (const m of f.kind.value.messages) {
          if (m.kind.case === "statusRequest") {
            const requestId = m.kind.value.requestId;
            void gate.then(() => out.push({ kind: { case: "reports", value: { reports: [{ kind: { case: "statusResponse", value: { requestId, timestamp: timestampNow(), sourceAgent: "slow" } } }] } } }));
          }
        }
      }
    })().catch(() => undefined);
    await waitFor(() => fx.srv.server.coordinator.agent("slow")?.session || undefined, 30_000, "slow agent's session");
    await control.submitTask({ task: { taskId: "t-slow", requiredCapabilities: ["slow"] } });
    await waitFor(() => fx.srv.server.coordinator.coordination().rounds.some((r) => r.state === CoordinationState.COORDINATING) || undefined, 30_000, "round 1 coordinating");
    // Another agent joins while round 1 waits: its own round plans and finishes its task meanwhile.
    const fast = createAgent({ address: fx.srv.address, agentId: "fast", credentials: await fx.pki.credentials("managed_agent", "fast"), capabilities: ["fast"] });
    fx.defer(() => fast.close({ flushMs: 100 }));
    await fast.connect();
    void fast.run(async () => ({}));
    await control.submitTask({ task: { taskId: "t-fast", requiredCapabilities: ["fast"] } });
    const started = Date.now();
    for (;;) {
      const t = (await control.getTask({ taskId: "t-fast" })).task!;
      if (t.state === TaskState.SUCCEEDED) break;
      if (Date.now() - started > 30_000) throw new Error("t-fast did not finish within 30 s");
      await sleep(20);
    }
    // Round 1 is still waiting for the slow agent's status.
    const { rounds } = await control.getCoordination({});
    expect(rounds.some((r) => r.state === CoordinationState.COORDINATING)).toBe(true);
    expect((await control.getTask({ taskId: "t-slow" })).task!.state).toBe(TaskState.PENDING);
  });
});
