import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { isValidPattern, topicMatches, topicSegment } from "../../src/events/index.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

// Topics are injective in the ids they carry: `a.b` and `a_b` are different tasks, so
// they must be different topics, or a watcher of one sees the other's events (input included).

describe("topicSegment", () => {
  it("escapes . and the escape character, and leaves every other id character as it is", () => {
    expect(topicSegment("a.b")).toBe("a%2Eb");
    expect(topicSegment("a_b")).toBe("a_b");
    expect(topicSegment("a%2Eb")).toBe("a%252Eb");
    expect(topicSegment("task_executor-1")).toBe("task_executor-1");
    expect(topicSegment("..")).toBe("%2E%2E");
  });

  it("maps distinct ids to distinct segments that a pattern can name", () => {
    const idChar = fc.constantFrom(..."ab._-%2E5".split(""));
    const id = fc.string({ unit: idChar, minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(id, id, (x, y) => {
        const [sx, sy] = [topicSegment(x), topicSegment(y)];
        expect(sx.includes(".")).toBe(false);
        expect(sx === sy).toBe(x === y);
        expect(isValidPattern(`task.${sx}.#`)).toBe(true);
        expect(topicMatches(`task.${sx}.#`, `task.${sy}.pending`)).toBe(x === y);
      }),
      { numRuns: 2000 },
    );
  });

  it("a pattern with a % that is not an escape is refused", () => {
    expect(isValidPattern("task.a%2Eb.#")).toBe(true);
    expect(isValidPattern("task.a%25.#")).toBe(true);
    for (const bad of ["task.a%.#", "task.a%2e.#", "task.a%41.#", "task.%2.#"]) expect(isValidPattern(bad), bad).toBe(false);
  });
});

describe("Control.WatchEvents: ids a.b and a_b", () => {
  const fx = useFixture();

  it("a watcher of task.a%2Eb.# and one of task.a_b.# each see only their own task's and agent's events", async () => {
    fx.srv = await startServer(fx.pki);
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    await control.submitTask({ task: { taskId: "start", requiredCapabilities: ["nobody"] } });
    // From the cursor of an event already made: no event can slip by before the watchers are registered.
    const afterCursor = fx.srv.server.events.last;
    const ac = new AbortController();
    const streams: Array<Promise<void>> = [];
    fx.defer(() => (ac.abort(), Promise.all(streams)));
    const watch = (topics: string[]) => {
      const seen: string[] = [];
      const done = (async () => {
        try {
          for await (const { event } of control.watchEvents({ topics, afterCursor }, { signal: ac.signal })) seen.push(event!.topic);
        } catch {
          /* cancelled at the end of the test */
        }
      })();
      streams.push(done);
      return seen;
    };
    const dotted = watch(["task.a%2Eb.#", "agent.a%2Eb.*", "task.end.#"]);
    const underscored = watch(["task.a_b.#", "agent.a_b.*", "task.end.#"]);
    for (const id of ["a.b", "a_b"]) {
      const agent = await fx.agent(id, { capabilities: [`cap-${id}`] });
      await agent.connect();
    }
    for (const id of ["a.b", "a_b"]) {
      await control.submitTask({ task: { taskId: id, requiredCapabilities: ["nobody"], input: { secret: `of ${id}` } } });
      await control.cancelTask({ taskId: id, reason: "test" });
    }
    await control.submitTask({ task: { taskId: "end", requiredCapabilities: ["nobody"] } });
    await waitFor(() => dotted.includes("task.end.pending") && underscored.includes("task.end.pending"), 30_000, "both watchers to see the end task");
    expect(dotted).toEqual(["agent.a%2Eb.online", "task.a%2Eb.pending", "task.a%2Eb.cancelled", "task.end.pending"]);
    expect(underscored).toEqual(["agent.a_b.online", "task.a_b.pending", "task.a_b.cancelled", "task.end.pending"]);
  }, 180_000);
});
