import { describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

/** Runs `n` tasks one after another on one agent; returns how many status requests and rounds they took. */
async function runOneAtATime(n: number): Promise<{ statusRequests: number; rounds: number; syncIntervalMs: number }> {
  const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
  const agent = await fx.agent("synced", { capabilities: ["work"] });
  const welcome = await agent.connect();
  void agent.run(async () => ({ ok: true }));
  for (let i = 0; i < n; i++) {
    await control.submitTask({ task: { taskId: `s${i}`, requiredCapabilities: ["work"] } });
    await waitFor(() => fx.srv.server.coordinator.getTask(`s${i}`).state === TaskState.SUCCEEDED, 20_000, `task s${i} to succeed`);
  }
  const lines = fx.srv.logs.lines;
  const interval = welcome.syncInterval;
  return {
    statusRequests: lines.filter((l) => l.message_type === "agent_status_request").length,
    rounds: new Set(lines.filter((l) => l.message_type === "coordination_directive").map((l) => l.correlation_id)).size,
    syncIntervalMs: interval ? Number(interval.seconds) * 1000 + interval.nanos / 1e6 : 0,
  };
}

describe("status collection reads the synced view", () => {
  it("a round asks only agents whose pushed status is older than the sync interval", async () => {
    // A long interval, so a loaded machine cannot make the pushed view stale between tasks.
    fx.srv = await startServer(fx.pki, { session: { syncIntervalMs: 10_000 } });
    const { statusRequests, rounds, syncIntervalMs } = await runOneAtATime(10);
    expect(syncIntervalMs).toBe(10_000);
    expect(rounds).toBe(10);
    // The first round asks (nothing pushed yet); later ones plan from what the agent pushed after each task.
    expect(statusRequests).toBeLessThanOrEqual(1);
    // Each round still walks the spec's steps in order, step 2 answered from the view. The
    // utilization the plan weighs is in the agent's own status, so the Performance Monitor
    // is not asked on the round's path; it is still told how each round went.
    const steps = ["resource_query", "resource_status", "coordination_directive", "directive_ack", "task_completion", "performance_report"];
    expect(fx.srv.logs.lines.filter((l) => l.message_type === "metrics_request")).toEqual([]);
    const byRound = new Map<string, string[]>();
    for (const l of fx.srv.logs.lines) if (typeof l.message_type === "string") byRound.set(l.correlation_id as string, [...(byRound.get(l.correlation_id as string) ?? []), l.message_type]);
    const { recent } = fx.srv.server.coordinator.coordination();
    expect(recent.length).toBe(10);
    for (const round of recent) {
      const seen = byRound.get(round.roundId) ?? [];
      const firsts = steps.map((t) => seen.indexOf(t));
      expect(firsts.every((i) => i >= 0)).toBe(true);
      expect([...firsts].sort((a, b) => a - b)).toEqual(firsts);
    }
  });

  it("with a zero interval every round asks every agent, as before", async () => {
    fx.srv = await startServer(fx.pki, { session: { syncIntervalMs: 0 } });
    const { statusRequests, rounds } = await runOneAtATime(5);
    expect(rounds).toBe(5);
    expect(statusRequests).toBeGreaterThanOrEqual(5);
    // The spec's diagram whole: every round asks the Performance Monitor too.
    expect(new Set(fx.srv.logs.lines.filter((l) => l.message_type === "metrics_request").map((l) => l.correlation_id)).size).toBe(5);
  });
});
