export type { Condition, ScanOptions, Store, WriteOp } from "./store.js";
export { createMemoryStore } from "./memory-store.js";
export { openConfiguredStore } from "./open-store.js";
export { openSqliteStore, type SqliteStoreOptions } from "./sqlite-store.js";
