import { join } from "node:path";
import type { BatonConfig } from "../config.js";
import { createMemoryStore } from "./memory-store.js";
import type { Store } from "./store.js";

/** The store the configuration names: SQLite in dataDir (the default), or memory. */
export async function openConfiguredStore(config: BatonConfig): Promise<Store> {
  if (config.store.kind === "memory") return createMemoryStore();
  // Loaded only when used: the native addon is not needed by memory-only embeddings.
  const { openSqliteStore } = await import("./sqlite-store.js");
  return openSqliteStore({ path: join(config.store.dataDir, "journal.sqlite"), synchronous: config.store.synchronous });
}
