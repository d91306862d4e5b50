// Writes batches to a SQLite store and prints "acked N" after each durable write,
// until killed. The test kills it with SIGKILL and checks every acked batch survived.
import { openSqliteStore } from "../../src/store/index.js";

const store = openSqliteStore({ path: process.argv[2]!, synchronous: (process.argv[3] as "FULL" | "NORMAL") ?? "FULL" });
for (let n = 0; ; n++) {
  const value = new TextEncoder().encode(`batch ${n}`);
  await store.write([
    { type: "put", key: `task/${String(n).padStart(8, "0")}`, value },
    { type: "put", key: `directive/${String(n).padStart(8, "0")}`, value },
  ]);
  process.stdout.write(`acked ${n}\n`);
}
