import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** How to make a journal key, for the message that asks for one. */
export function journalKeyHint(path: string): string {
  const make = basename(path) === "journal.key" ? `\`baton certs journal-key --dir ${dirname(path)}\`` : "`openssl rand -base64 32`";
  return `make one with ${make} (\`baton certs init\` and \`baton serve --dev-certs\` make <certsDir>/journal.key too), or set BATON_JOURNAL_KEY`;
}
import { ConfigError, type BatonConfig } from "../config.js";
import { lockDirectory } from "./dir-lock.js";
import { openEtcdStore, type EtcdConnection, type EtcdStoreOptions } from "./etcd-store.js";
import { createMemoryStore } from "./memory-store.js";
import { createSecretBox, parseJournalKeys, type SecretBox } from "./secret-box.js";
import { openSqliteThreadStore } from "./sqlite-thread.js";
import type { Store } from "./store.js";

/** The journal's file in a data directory. */
export const JOURNAL_FILE = "journal.sqlite";

/**
 * The store the configuration names: SQLite in dataDir (the default), or memory. The
 * SQLite journal holds its data directory for this process (a second server refuses)
 * until close(), is checked whole before use, and seals secrets with the journal key.
 */
export async function openConfiguredStore(config: BatonConfig): Promise<Store> {
  if (config.store.kind === "memory") return createMemoryStore();
  if (config.store.kind === "etcd") return openEtcdStore(etcdStoreOptions(config));
  const secrets = journalSecrets(config);
  const { dataDir } = config.store;
  makeDataDir(dataDir);
  const lock = lockDirectory(dataDir);
  let store: Store;
  try {
    // On a thread of its own: a commit's fsync does not stall the event loop.
    store = await openSqliteThreadStore({ path: join(dataDir, JOURNAL_FILE), synchronous: config.store.synchronous, secrets });
  } catch (err) {
    lock.release();
    throw err;
  }
  return {
    ...store,
    async close() {
      try {
        await store.close();
      } finally {
        lock.release();
      }
    },
  };
}

/** Makes the data directory (0700) if missing; a ConfigError naming it when it cannot be. */
export function makeDataDir(dataDir: string): void {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(`store.dataDir ${dataDir} cannot be made (${e.code ?? e.message}): the server keeps its journal there`);
  }
}

/**
 * The journal's keys, from store.key (BATON_JOURNAL_KEY) or store.keyFile; undefined when
 * neither is there: the journal then takes no task with sensitive_input (FAILED_PRECONDITION
 * naming the setting), and every other task as usual. A key that is there but unreadable or
 * malformed is a ConfigError naming the setting.
 */
export function journalSecrets(config: BatonConfig): SecretBox | undefined {
  if (config.store.key) {
    return createSecretBox(config.store.key.split(",").map((k) => Buffer.from(k.trim(), "base64")), "store.key (BATON_JOURNAL_KEY)");
  }
  const path = config.store.keyFile;
  const source = `store.keyFile ${path}`;
  if (!existsSync(path)) return undefined;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`${source} cannot be read: ${(err as Error).message}`);
  }
  return createSecretBox(parseJournalKeys(text, source), source);
}

/** Where etcd is, from store.etcd. */
export function etcdConnection(config: BatonConfig): EtcdConnection {
  const { endpoints, caFile, certFile, keyFile, dialTimeoutMs } = config.store.etcd;
  if (endpoints.length === 0) throw new ConfigError("store.etcd.endpoints is empty: store.kind \"etcd\" needs at least one etcd endpoint");
  for (const [name, file] of [["caFile", caFile], ["certFile", certFile], ["keyFile", keyFile]] as const) {
    if (file && !existsSync(file)) throw new ConfigError(`store.etcd.${name} ${file} does not exist`);
  }
  if ((certFile === "") !== (keyFile === "")) throw new ConfigError("store.etcd.certFile and store.etcd.keyFile go together: set both or neither");
  return { endpoints, caFile, certFile, keyFile, dialTimeoutMs };
}

/** The etcd journal's options (under <prefix>journal/), sealing secrets with the journal key; `fence` makes every write conditional on leadership. */
export function etcdStoreOptions(config: BatonConfig, extra: Partial<EtcdStoreOptions> = {}): EtcdStoreOptions {
  const secrets = journalSecrets(config);
  return { ...etcdConnection(config), prefix: `${config.store.etcd.prefix}journal/`, maxTxnOps: config.store.etcd.maxTxnOps, ...(secrets ? { secrets } : {}), ...extra };
}
