import { describe, expect, it } from "vitest";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer } from "../helpers/server.js";
import { openSse, type SseClient } from "./sse.js";

const fx = useFixture();

/** The next change event about a task (rounds and agents change too). */
async function nextTaskChange(sse: SseClient): Promise<{ id: string; taskId: string }> {
  for (;;) {
    const e = await sse.next("change");
    const change = JSON.parse(e.data) as { task?: { spec: { taskId: string } } };
    if (change.task) return { id: e.id, taskId: change.task.spec.taskId };
  }
}

describe("dashboard event stream", () => {
  it("resumes after a reconnect from Last-Event-ID: the missed events, no new snapshot", async () => {
    fx.srv = await startServer(fx.pki);
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const url = `http://localhost:${fx.srv.server.adminPort}/dashboard/api/events`;
    const first = await openSse(url);
    const snapshot = await first.next("snapshot");
    expect(snapshot.id).toMatch(/^[0-9a-f]{12}-\d+$/);
    await control.submitTask({ task: { taskId: "seen", requiredCapabilities: ["nobody-has-it"] } });
    const seen = await nextTaskChange(first);
    expect(seen.taskId).toBe("seen");
    first.close();
    // Submitted while no dashboard is connected.
    await control.submitTask({ task: { taskId: "missed", requiredCapabilities: ["nobody-has-it"] } });
    const resumed = await openSse(url, { "last-event-id": seen.id });
    expect((await nextTaskChange(resumed)).taskId).toBe("missed");
    expect(resumed.raw).not.toContain("event: snapshot");
    resumed.close();
  });

  it("sends a snapshot again for an id of another process, and refuses one that is not a dashboard id", async () => {
    fx.srv = await startServer(fx.pki);
    const url = `http://localhost:${fx.srv.server.adminPort}/dashboard/api/events`;
    const foreign = await openSse(url, { "last-event-id": "0123456789ab-42" });
    expect((await foreign.next()).event).toBe("snapshot");
    foreign.close();
    const bad = await openSse(url, { "last-event-id": "42; drop" });
    expect(bad.status).toBe(400);
    bad.close();
  });

  it("pushes agents' figures (in flight against the cap, utilization from the synced view) and the metrics in a pulse", async () => {
    fx.srv = await startServer(fx.pki, { dashboard: { pulseMs: 200 } });
    const agent = await fx.agent("pulse-agent", { capabilities: ["work"], labels: { zone: "eu-1" }, maxInFlight: 3, utilization: () => 0.42 });
    await agent.connect();
    const sse = await openSse(`http://localhost:${fx.srv.server.adminPort}/dashboard/api/events`);
    await sse.next("snapshot");
    // The agent pushes its status at connect: its utilization arrives in a pulse once the coordinator has it.
    let shown: { utilization: number | null; maxInFlight: number; labels: Record<string, string>; breaker: string } | undefined;
    for (let i = 0; i < 100 && shown?.utilization !== 0.42; i++) {
      const pulse = JSON.parse((await sse.next("pulse")).data);
      shown = pulse.agents.find((a: { agentId: string }) => a.agentId === "pulse-agent");
      expect(pulse.metrics).toHaveProperty("messageLatency");
      expect(pulse.coordination.coordinatorId).toBe(fx.srv.config.coordinatorId);
    }
    expect(shown).toMatchObject({ utilization: 0.42, maxInFlight: 3, labels: { zone: "eu-1" }, breaker: "closed" });
    sse.close();
  });
});
