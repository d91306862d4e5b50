// Sequential writes to the SQLite journal, one awaited at a time as the task journal
// commits them: single-put batches and 100-put batches, with synchronous FULL and NORMAL.
// Each write blocks the event loop for its commit, so its latency is also the stall.
//   node --import tsx bench/store.ts
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStore, type WriteOp } from "../src/store/index.js";

// About the size of an encoded Task with its spec.
const VALUE = Uint8Array.from({ length: 256 }, (_, i) => (i * 31) & 0xff);
const PUTS = { 1: 2000, 100: 20_000 } as const;

const dir = mkdtempSync(join(tmpdir(), "baton-bench-store-"));
try {
  for (const mode of ["FULL", "NORMAL"] as const) {
    for (const batch of [1, 100] as const) {
      const store = openSqliteStore({ path: join(dir, `${mode}-${batch}`, "journal.sqlite"), synchronous: mode });
      const batches = PUTS[batch] / batch;
      const latencies: number[] = [];
      let n = 0;
      const next = (): WriteOp[] => Array.from({ length: batch }, () => ({ type: "put", key: `task/${String(n++).padStart(8, "0")}`, value: VALUE }));
      // A few writes first, so the figures leave out creating the file and the WAL.
      for (let w = 0; w < 10; w++) await store.write(next());
      const start = performance.now();
      for (let b = 0; b < batches; b++) {
        const t = performance.now();
        await store.write(next());
        latencies.push(performance.now() - t);
      }
      const seconds = (performance.now() - start) / 1000;
      await store.close();
      latencies.sort((a, b) => a - b);
      const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!.toFixed(2);
      process.stdout.write(
        `store: mode=${mode} batch=${batch} writes_per_s=${Math.round(batches / seconds)} puts_per_s=${Math.round((batches * batch) / seconds)} ` +
          `p50_ms=${pct(0.5)} p99_ms=${pct(0.99)} batches=${batches}\n`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
