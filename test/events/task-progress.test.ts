import { describe, expect, it } from "vitest";
import { Control, TaskState, type Event } from "../../gen/baton/v1/control_pb.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

describe("progress visible to operators", () => {
  it("GetTask shows a running task's latest progress; task.<id>.progress events are rate-limited per task, the last always delivered", async () => {
    fx.srv = await startServer(fx.pki, { tasks: { progressEventIntervalMs: 250 } });
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const events: Event[] = [];
    const ac = new AbortController();
    fx.defer(() => ac.abort());
    const watching = (async () => {
      for await (const { event } of control.watchEvents({ topics: ["task.chatty.*"] }, { signal: ac.signal })) {
        events.push(event!);
        if (event!.topic === "task.chatty.succeeded") return;
      }
    })();
    // The progress and final events come after the agent connects and runs: long after the watch is open.
    const agent = await fx.agent("talker", { capabilities: ["talk"] });
    await agent.connect();
    let halfway!: () => void;
    const reported = new Promise<void>((resolve) => (halfway = resolve));
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    void agent.run(async (_d, ctx) => {
      // A chatty agent: 300 updates as fast as it can, then it waits for the test.
      for (let i = 1; i <= 300; i++) {
        ctx.progress(i / 3, { resourceUtilization: 0.5 });
        if (i % 50 === 0) await new Promise((r) => setImmediate(r));
      }
      halfway();
      await finished;
      return { ok: true };
    });
    await control.submitTask({ task: { taskId: "chatty", requiredCapabilities: ["talk"] } });
    await reported;
    // The last update (100%) reaches GetTask while the task runs.
    let task = (await control.getTask({ taskId: "chatty" })).task!;
    for (const deadline = Date.now() + 30_000; task.progress?.metrics?.completionPercentage !== 100 && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 20));
      task = (await control.getTask({ taskId: "chatty" })).task!;
    }
    expect(task.state).toBe(TaskState.RUNNING);
    expect(task.progress?.metrics?.completionPercentage).toBe(100);
    expect(task.progress?.sourceAgent).toBe("talker");
    // The last one is delivered as an event too, at the end of its interval.
    await waitFor(() => events.some((e) => e.kind.case === "progress" && e.kind.value.metrics?.completionPercentage === 100), 30_000, "the 100% progress event");
    finish();
    await watching;
    const progress = events.filter((e) => e.topic === "task.chatty.progress");
    expect(progress.length).toBeGreaterThanOrEqual(1);
    // 300 updates within a few intervals: far fewer events, and never two of one task within the interval.
    expect(progress.length).toBeLessThan(50);
    for (const e of progress) expect(e.kind.case === "progress" && e.kind.value.taskId).toBe("chatty");
    const times = progress.map((e) => Number(e.timestamp!.seconds) * 1000 + e.timestamp!.nanos / 1e6);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(240);
    const last = progress.at(-1)!.kind;
    expect(last.case === "progress" ? last.value.metrics?.completionPercentage : undefined).toBe(100);
    // The last progress event precedes the task's final event; a task that has ended shows none.
    expect(events.findIndex((e) => e.topic === "task.chatty.succeeded")).toBeGreaterThan(events.indexOf(progress.at(-1)!));
    const ended = (await control.getTask({ taskId: "chatty" })).task!;
    expect(ended.state).toBe(TaskState.SUCCEEDED);
    expect(ended.progress).toBeUndefined();
  });
});
