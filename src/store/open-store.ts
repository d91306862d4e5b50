import { join } from "node:path";
import type { BatonConfig } from "../config.js";
import { createMemoryStore } from "./memory-store.js";
import { openSqliteStore } from "./sqlite-store.js";
import type { Store } from "./store.js";

/** The store the configuration names: SQLite in dataDir (the default), or memory. */
export async function openConfiguredStore(config: BatonConfig): Promise<Store> {
  if (config.store.kind === "memory") return createMemoryStore();
  return openSqliteStore({ path: join(config.store.dataDir, "journal.sqlite"), synchronous: config.store.synchronous });
}
