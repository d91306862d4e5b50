import { create, equals } from "@bufbuild/protobuf";
import { TimestampSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { timestampAt } from "../../src/rpc/index.js";

describe("timestampAt", () => {
  it("is what timestampFromMs gives, field for field, for any time", () => {
    const times = [0, 1, 999, 1000, 1001, -1, -999, -1000, -1001, 1.5, -0.25, 1_764_000_000_123, Date.now(), 253_402_300_799_999, -62_135_596_800_000];
    for (let i = 0; i < 200; i++) times.push(Math.floor((Math.random() - 0.3) * 4e12), (Math.random() - 0.5) * 1e6);
    for (const ms of times) {
      const ours = timestampAt(ms);
      const theirs = timestampFromMs(ms);
      expect(ours, String(ms)).toStrictEqual(theirs);
      expect(equals(TimestampSchema, ours, theirs)).toBe(true);
      expect(Object.keys(ours)).toEqual(Object.keys(create(TimestampSchema, { seconds: 1n, nanos: 1 })));
    }
  });
});
