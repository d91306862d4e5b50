import { randomUUID } from "node:crypto";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { AckOutcome, type CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { openRawSession } from "../helpers/raw-session.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

// Counts the timers directive delivery arms (its ack deadlines, leases and retry backoff),
// told apart from every other timer by the caller's file.
const realSetTimeout = globalThis.setTimeout;
let deliveryTimers = 0;
function countDeliveryTimers(): void {
  deliveryTimers = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    if (new Error().stack?.includes("directive-delivery")) deliveryTimers++;
    return realSetTimeout(...args);
  }) as typeof setTimeout;
}
afterEach(() => {
  globalThis.setTimeout = realSetTimeout;
});

describe("directive delivery's timer", () => {
  it("is armed about once per ack timeout, not once per directive, ack or completion", async () => {
    // The default ack timeout (10 s): the tasks below take far less on a quiet machine, and
    // even a slow run arms it only once per 10 s.
    fx.srv = await startServer(fx.pki, {});
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const agent = await fx.agent("timers", { capabilities: ["work"] });
    await agent.connect();
    void agent.run(async () => ({ ok: true }));
    const runOne = async (taskId: string) => {
      await control.submitTask({ task: { taskId, requiredCapabilities: ["work"] } });
      await waitFor(() => fx.srv.server.coordinator.getTask(taskId).state === TaskState.SUCCEEDED, 30_000, `task ${taskId} to succeed`);
    };
    await runOne("warm");
    countDeliveryTimers();
    const started = performance.now();
    const n = 40;
    for (let i = 0; i < n; i++) await runOne(`t${i}`);
    const periods = Math.ceil((performance.now() - started) / 10_000);
    // Re-armed at each ack and cleared at each completion, it was at least one a task.
    expect(deliveryTimers).toBeLessThanOrEqual(periods + 2);
    expect(deliveryTimers).toBeLessThan(n / 4);
  });

  it("still redelivers a directive that is never acked when another's ack moved the deadline later", async () => {
    fx.srv = await startServer(fx.pki, { session: { ackTimeoutMs: 1000 }, delivery: { retryCount: 3, backoffInitialMs: 20, backoffMaxMs: 100, leaseMs: 60_000 } });
    const id = "timers_raw";
    const raw = await openRawSession(fx.srv.address, await fx.pki.credentials("managed_agent", id), id);
    fx.defer(() => raw.close());
    const report = (kind: Parameters<typeof raw.signedReports>[0][number]["kind"]) => raw.send({ kind: { case: "signedReports", value: raw.signedReports([{ kind }]) } });
    const status = (requestId: string) => report({ case: "statusResponse", value: { requestId, timestamp: timestampNow(), sourceAgent: id, state: AgentState.ONLINE } });
    status(randomUUID());
    const directives: CoordinationDirective[] = [];
    let acked: string | undefined;
    const reading = setInterval(() => {
      for (const frame of raw.received.splice(0)) {
        for (const m of frame.kind.case === "signedMessages" ? raw.decode(frame.kind.value).messages : []) {
          if (m.kind.case === "statusRequest") status(m.kind.value.requestId);
          if (m.kind.case !== "directive") continue;
          const d = m.kind.value;
          directives.push(d);
          // The first directive is taken; every other one is left unanswered.
          acked ??= d.directiveId;
          if (d.directiveId === acked) report({ case: "directiveAck", value: { directiveId: d.directiveId, timestamp: timestampNow(), sourceAgent: id, attempt: d.attempt, sequence: d.sequence, outcome: AckOutcome.ACCEPTED } });
        }
      }
    }, 5);
    fx.defer(() => clearInterval(reading));
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    await control.submitTasks({ tasks: ["first", "second"].map((taskId) => ({ taskId, requiredCapabilities: ["python"] })) });
    const unacked = () => directives.find((d) => d.directiveId !== acked);
    await waitFor(() => unacked(), 30_000, "the second directive");
    const other = unacked()!.directiveId;
    await waitFor(() => directives.filter((d) => d.directiveId === other).length >= 2 || undefined, 30_000, "the unacked directive to be sent again");
    const sent = directives.filter((d) => d.directiveId === other);
    expect(sent[1]!.attempt).toBeGreaterThan(sent[0]!.attempt);
    // The acked one is not sent again: its deadline is its lease now, a minute away.
    expect(directives.filter((d) => d.directiveId === acked)).toHaveLength(1);
  });
});
