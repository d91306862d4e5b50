// Writes numbered batches to a SQLite store and prints "acked <n>" once each write has
// resolved, until it has written <count> or is killed. store.test.ts kills it with
// SIGKILL mid-stream and checks that every acknowledged batch survived, whole.
//   node --import tsx test/store/writer-child.ts <path> <FULL|NORMAL> <count>
import { openSqliteStore } from "../../src/store/index.js";

const [path, synchronous, count] = process.argv.slice(2);
if (!path || (synchronous !== "FULL" && synchronous !== "NORMAL")) throw new Error("usage: writer-child.ts <path> <FULL|NORMAL> <count>");
const store = openSqliteStore({ path, synchronous });
const id = (n: number) => String(n).padStart(8, "0");
for (let n = 0; n < Number(count ?? Infinity); n++) {
  const value = new TextEncoder().encode(`batch ${n}`);
  // Two puts and a move of the "last" marker: a torn batch would show as a missing
  // half or as zero or two markers.
  await store.write([
    { type: "put", key: `task/${id(n)}`, value },
    { type: "put", key: `directive/${id(n)}`, value },
    ...(n > 0 ? [{ type: "delete" as const, key: `last/${id(n - 1)}` }] : []),
    { type: "put", key: `last/${id(n)}`, value },
  ]);
  process.stdout.write(`acked ${n}\n`);
}
await store.close();
