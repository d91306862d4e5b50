import { describe, expect, it } from "vitest";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { Code } from "../../src/errors.js";
import { EventLog, topicMatches } from "../../src/events/index.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer } from "../helpers/server.js";

// One WatchEvents pattern must not be able to freeze the coordinator: patterns are bounded
// (bytes, segments, patterns per call), the matcher is linear and never recurses, and the
// fan-out never throws into the coordinator's emit.

const hashes = (n: number, tail = "") => Array.from({ length: n }, () => "#").join(".") + tail;
const append = (log: EventLog, topic: string) => log.append({ topic, correlationId: "", reason: "", kind: { case: undefined } });
const watchOf = (log: EventLog, patterns: string[]) => () => log.watch(patterns, 0n, new AbortController().signal);

describe("WatchEvents pattern limits", () => {
  it("a pattern of 400 # segments (803 bytes) is INVALID_ARGUMENT, naming the limit", () => {
    const log = new EventLog();
    const p = hashes(400, ".abc");
    expect(Buffer.byteLength(p)).toBe(803);
    expect(watchOf(log, [p])).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT, message: expect.stringMatching(/at most 512 bytes/) }));
  });

  it("a pattern of 30,000 segments is INVALID_ARGUMENT, naming the limit", () => {
    const log = new EventLog({ maxPatternBytes: 1_000_000 });
    expect(watchOf(log, [hashes(30_000)])).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT, message: expect.stringMatching(/at most 32 segments/) }));
  });

  it("more patterns than allowed in one call is INVALID_ARGUMENT, naming the limit", () => {
    const log = new EventLog();
    const many = Array.from({ length: 257 }, (_, i) => `task.t${i}.#`);
    expect(watchOf(log, many)).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT, message: expect.stringMatching(/at most 256/) }));
    expect(watchOf(log, many.slice(0, 256))).not.toThrow();
  });

  it("the limits can be lifted (or tightened) through the options", () => {
    const log = new EventLog({ maxPatterns: 2, maxPatternSegments: 3, maxPatternBytes: 10 });
    expect(watchOf(log, ["a", "b", "c"])).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT }));
    expect(watchOf(log, ["a.b.c.d"])).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT }));
    expect(watchOf(log, ["abcdef.ghijk"])).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT }));
    expect(watchOf(log, ["a.*.#", "b"])).not.toThrow();
    expect(() => new EventLog({ maxPatterns: 0 })).toThrow(/maxPatterns/);
  });
});

describe("a long pattern, bounds lifted", () => {
  it("the matcher takes 30,000 # segments without recursing (correct answers)", () => {
    expect(topicMatches(hashes(30_000), "task.t1.pending")).toBe(true);
    expect(topicMatches(hashes(30_000, ".pending"), "task.t1.pending")).toBe(true);
    expect(topicMatches(hashes(30_000, ".running"), "task.t1.pending")).toBe(false);
    expect(topicMatches(`task.${hashes(30_000)}.*.*.*`, "task.t1.pending")).toBe(false);
  });

  it("the matcher takes 400 # segments before a literal that does not match (correct answers)", () => {
    expect(topicMatches(hashes(400, ".abc"), "task.t1.pending")).toBe(false);
    expect(topicMatches(hashes(400, ".pending"), "task.t1.pending")).toBe(true);
    expect(topicMatches(`${hashes(400)}.*.${hashes(400)}.t1.${hashes(400)}`, "task.t1.pending")).toBe(true);
  });

  it("an event reaches a watcher of a 30,000-segment pattern and the other watchers; append never throws", async () => {
    const log = new EventLog({ maxPatternSegments: 100_000, maxPatternBytes: 1_000_000 });
    const long = log.watch([hashes(30_000, ".pending")], 0n, new AbortController().signal)[Symbol.asyncIterator]();
    const other = log.watch(["task.*.pending"], 0n, new AbortController().signal)[Symbol.asyncIterator]();
    expect(() => append(log, "task.t1.pending")).not.toThrow();
    expect((await long.next()).value?.topic).toBe("task.t1.pending");
    expect((await other.next()).value?.topic).toBe("task.t1.pending");
  });
});

describe("Control.WatchEvents refuses oversized patterns", () => {
  const fx = useFixture();

  it("400 # segments, 30,000 segments and 257 patterns are INVALID_ARGUMENT; the server carries on", async () => {
    fx.srv = await startServer(fx.pki);
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const drain = async (topics: string[]) => {
      for await (const _ of control.watchEvents({ topics })) {
        /* none expected */
      }
    };
    // Each refusal names the pattern and the limit it is over (the request validator may refuse a long string first).
    const overLimit = expect.stringMatching(/topics\[0\].*(at most|over the limit)/);
    await expect(drain([hashes(400, ".abc")])).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: overLimit });
    await expect(drain([hashes(30_000)])).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: overLimit });
    await expect(drain(Array.from({ length: 257 }, (_, i) => `task.t${i}.#`))).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(/256/) });
    // The coordinator still answers, and its submits report success.
    await expect(control.submitTask({ task: { taskId: "after" } })).resolves.toMatchObject({ created: true });
    await expect(control.cancelTask({ taskId: "after", reason: "test" })).resolves.toBeTruthy();
  });
});
