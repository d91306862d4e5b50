import { describe, expect, it } from "vitest";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

// Watchers whose patterns are as costly as the limits allow (256 patterns of 32 segments,
// runs of # that the old recursive matcher explored exponentially) must not slow anyone
// else: submits and cancels answer, agents connect, and heartbeats keep sessions alive.

const fx = useFixture();
const hashes = (n: number) => Array.from({ length: n }, () => "#").join(".");

/** 256 allowed patterns: one that matches every pending task, the rest runs of # (and of *.#) ending in a literal that never matches. */
function hostilePatterns(w: number): string[] {
  const out = [`${hashes(31)}.pending`];
  for (let k = 0; out.length < 256; k++) out.push(k % 4 === 3 ? `${Array.from({ length: 31 }, (_, i) => (i % 2 ? "#" : "*")).join(".")}.w${w}x${k}` : `${hashes(31)}.w${w}x${k}`);
  return out;
}

describe("watchers with hostile but allowed patterns", () => {
  it("do not stop SubmitTask, CancelTask, Connect or the heartbeats of others", async () => {
    // Heartbeats every 250 ms, and either side (the SDK follows Welcome.heartbeat_misses) closes
    // a session after 20 silent intervals, 5 s: a coordinator blocked that long by the matcher
    // (the old recursive one was exponential in these patterns) drops them, while a
    // stall of a loaded 2-core machine (a second or two) does not.
    fx.srv = await startServer(fx.pki, { session: { heartbeatIntervalMs: 250, heartbeatMisses: 20 } });
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const ac = new AbortController();
    const consume = async (topics: string[], seen: string[]) => {
      try {
        for await (const { event } of control.watchEvents({ topics }, { signal: ac.signal })) seen.push(event!.topic);
      } catch {
        /* cancelled at the end of the test */
      }
    };
    const healthySeen: string[] = [];
    const watching = [consume(["agent.#", "task.#"], healthySeen)];
    const hostileSeen: string[][] = Array.from({ length: 8 }, () => []);
    for (const [w, seen] of hostileSeen.entries()) watching.push(consume(hostilePatterns(w), seen));
    fx.defer(() => (ac.abort(), Promise.all(watching)));

    // Every hostile watcher is registered once it has seen the probe's pending event.
    await control.submitTask({ task: { taskId: "probe", requiredCapabilities: ["nobody"] } });
    await waitFor(() => hostileSeen.every((s) => s.includes("task.probe.pending")), 60_000, "every hostile watcher to see the probe");
    await expect(control.cancelTask({ taskId: "probe", reason: "probe done" })).resolves.toMatchObject({ task: { state: TaskState.CANCELLED } });

    const steady = await fx.agent("steady", { capabilities: ["work"] });
    await steady.connect();
    void steady.run(async () => ({ ok: true }));
    const ids = Array.from({ length: 20 }, (_, i) => `job-${i}`);
    for (const taskId of ids) await expect(control.submitTask({ task: { taskId, requiredCapabilities: ["work"] } })).resolves.toMatchObject({ created: true });
    const late = await fx.agent("late", { capabilities: ["other"] });
    await late.connect();
    await waitFor(() => ids.every((id) => healthySeen.includes(`task.${id}.succeeded`)), 60_000, "every job to succeed");

    expect((await control.getAgent({ agentId: "steady" })).agent?.state).toBe(AgentState.ONLINE);
    expect((await control.getAgent({ agentId: "late" })).agent?.state).toBe(AgentState.ONLINE);
    // No session was dropped for missed heartbeats while the hostile watchers were served.
    expect(healthySeen.filter((t) => /^agent\.[^.]+\.(disconnected|offline)$/.test(t))).toEqual([]);
    // And the hostile watchers got what their patterns match, nothing else.
    await waitFor(() => hostileSeen.every((s) => ids.every((id) => s.includes(`task.${id}.pending`))), 30_000, "the hostile watchers to see every job's pending event");
    for (const s of hostileSeen) expect(s.every((t) => t.endsWith(".pending"))).toBe(true);
  }, 120_000);
});
