import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TopicIndex, topicMatches } from "../../src/events/index.js";

/** AMQP topic matching as the spec defines it, written the obvious way (recursive, exponential): the reference. */
function reference(pattern: string, topic: string): boolean {
  const p = pattern.split(".");
  const t = topic.split(".");
  const go = (i: number, j: number): boolean => {
    if (i === p.length) return j === t.length;
    if (p[i] === "#") {
      for (let k = j; k <= t.length; k++) if (go(i + 1, k)) return true;
      return false;
    }
    return j < t.length && (p[i] === "*" || p[i] === t[j]) && go(i + 1, j + 1);
  };
  return go(0, 0);
}

const topicSeg = fc.constantFrom("a", "b", "c");
const patternSeg = fc.constantFrom("a", "b", "c", "*", "#", "#");
const topic = fc.array(topicSeg, { minLength: 1, maxLength: 7 }).map((s) => s.join("."));
const pattern = fc.array(patternSeg, { minLength: 1, maxLength: 8 }).map((s) => s.join("."));

describe("topicMatches agrees with the reference", () => {
  it("on random patterns and topics", () => {
    fc.assert(fc.property(pattern, topic, (p, t) => topicMatches(p, t) === reference(p, t)), { numRuns: 20_000 });
  });
});

describe("TopicIndex", () => {
  it("routes a topic to exactly the subscribers whose pattern the reference matches", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(9), pattern), { maxLength: 40 }), fc.array(topic, { minLength: 1, maxLength: 10 }), (subs, topics) => {
        const index = new TopicIndex<number>();
        for (const [who, p] of subs) index.add(p, who);
        for (const t of topics) {
          const expected = new Set(subs.filter(([, p]) => reference(p, t)).map(([who]) => who));
          const got = index.match(t);
          expect(new Set(got)).toEqual(expected);
          expect(got).toHaveLength(expected.size);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("forgets removed patterns, keeps the others, and is empty once all are removed", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(fc.nat(9), pattern), { maxLength: 30, selector: ([w, p]) => `${w} ${p.replace(/#(\.#)+/g, "#")}` }), fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }), topic, (subs, drop, t) => {
        const index = new TopicIndex<number>();
        for (const [who, p] of subs) index.add(p, who);
        const kept = subs.filter((_, i) => !drop[i]);
        subs.forEach(([who, p], i) => drop[i] && index.remove(p, who));
        const expected = new Set(kept.filter(([, p]) => reference(p, t)).map(([who]) => who));
        expect(new Set(index.match(t))).toEqual(expected);
        expect(index.match(t)).toHaveLength(expected.size);
        for (const [who, p] of kept) index.remove(p, who);
        expect(index.empty).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it("takes a pattern of 30,000 segments without recursing", () => {
    const index = new TopicIndex<string>();
    const long = Array.from({ length: 30_000 }, (_, i) => (i % 2 ? "#" : "*")).join(".");
    index.add(`${long}.x`, "never");
    index.add(Array.from({ length: 30_000 }, () => "#").join("."), "all");
    expect(index.match("task.t1.pending")).toEqual(["all"]);
    index.remove(`${long}.x`, "never");
    index.remove(Array.from({ length: 30_000 }, () => "#").join("."), "all");
    expect(index.empty).toBe(true);
  });
});
