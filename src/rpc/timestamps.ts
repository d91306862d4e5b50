import type { Timestamp } from "@bufbuild/protobuf/wkt";

/**
 * A Timestamp of `ms` since the epoch: what protobuf-es's timestampFromMs gives, as a
 * literal. Every task change, event and batch stamps one, and create() costs more than
 * the rest of making it.
 */
export function timestampAt(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
}
