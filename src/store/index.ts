export type { Condition, ScanOptions, Store, WriteOp } from "./store.js";
export { createMemoryStore } from "./memory-store.js";
export { JOURNAL_FILE, journalKeyHint, journalSecrets, makeDataDir, openConfiguredStore } from "./open-store.js";
export { openSqliteStore, type SqliteStoreOptions } from "./sqlite-store.js";
export { openSqliteThreadStore } from "./sqlite-thread.js";
export { JournalError } from "./journal-error.js";
export { lockDirectory, LOCK_FILE, type DirectoryLock } from "./dir-lock.js";
export { createJournalKeyFile, createSecretBox, type SecretBox } from "./secret-box.js";
export { adoptJournal, checkJournal, resetJournal, type JournalReport } from "./journal-recovery.js";
