import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { createAsyncQueue } from "../../src/streams/index.js";

// A session's outbox is such a queue, drained a heartbeat at a time on a quiet session: what
// was taken must not stay reachable from the queue (it held every frame sent until 1,025 had
// gone by, ~140 KB per idle agent on average).
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
// WeakRefs made in this job stay alive until it ends: collect after a turn of the loop.
const collected = async (refs: Array<WeakRef<object>>) => {
  await new Promise((r) => setTimeout(r, 0));
  gc();
  return refs.filter((r) => r.deref() !== undefined).length;
};

describe("an async queue", () => {
  it("lets go of what drain() took", async () => {
    const q = createAsyncQueue<object>({ capacity: 10_000, overflow: "error" });
    const refs: Array<WeakRef<object>> = [];
    for (let round = 0; round < 50; round++) {
      const item = { payload: new Uint8Array(1024) };
      refs.push(new WeakRef(item));
      q.push(item);
      expect(q.drain()).toEqual([item]);
    }
    // The last one may still be held by the test's own frame; none before it may be held by the queue.
    expect(await collected(refs.slice(0, -1))).toBe(0);
    q.push({ n: 1 });
    q.push({ n: 2 });
    expect(q.drain(1)).toEqual([{ n: 1 }]);
    expect(q.drain()).toEqual([{ n: 2 }]);
    expect(q.size).toBe(0);
  });

  it("lets go of what its iterator gave out, and of what drop-oldest dropped", async () => {
    const q = createAsyncQueue<object>({ capacity: 4, overflow: "drop-oldest" });
    const refs: Array<WeakRef<object>> = [];
    const push = (n: number) => {
      const item = { n, payload: new Uint8Array(1024) };
      refs.push(new WeakRef(item));
      q.push(item);
    };
    for (let n = 0; n < 10; n++) push(n);
    // The oldest six were dropped; the iterator takes the four left.
    const it = q[Symbol.asyncIterator]();
    const seen: number[] = [];
    for (let i = 0; i < 4; i++) seen.push(((await it.next()).value as { n: number }).n);
    expect(seen).toEqual([6, 7, 8, 9]);
    // The suspended iterator still holds the item it last gave out; nothing before it stays.
    expect(await collected(refs.slice(0, -1))).toBe(0);
    q.close();
    expect((await it.next()).done).toBe(true);
  });
});
