import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import { prefixEnd } from "../store/index.js";

/** One key as read at a revision: its value and create revision, or absent. */
export interface KeyState {
  /** The store revision this was read at. */
  revision: string;
  kv: IKeyValue | undefined;
}

/** Why a wait re-read its key ("watching": the watch is set up, nothing read). */
export type RereadReason = "start" | "event" | "reconnect" | "recheck" | "watching";

/** Reads a key, with the revision the answer is true at. */
export async function readKey(client: Etcd3, key: Buffer): Promise<KeyState> {
  const answer = await client.kv.range({ key });
  return { revision: String(answer.header.revision), kv: answer.kvs[0] };
}

/**
 * Resolves once `key` is no longer the incarnation `known` (deleted, or re-created with
 * another create revision), with what it is now. A watch alone is not trusted: etcd 3.4's
 * watches can miss events across a reconnect, so the key is re-read (a linearizable read,
 * at a known revision) whenever the watch reconnects and every recheckMs whatever it says.
 */
export async function waitForChange(client: Etcd3, key: Buffer, known: KeyState, options: { recheckMs: number; signal: AbortSignal; onReread?: (why: RereadReason, changed: boolean) => void }): Promise<KeyState> {
  const createRevision = known.kv ? String(known.kv.create_revision) : "0";
  const changed = (state: KeyState) => (state.kv ? String(state.kv.create_revision) : "0") !== createRevision;
  let watcher: Watcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  let onAbort = () => {};
  try {
    return await new Promise<KeyState>((resolve, reject) => {
      let settled = false;
      const done = (state: KeyState) => {
        if (!settled) {
          settled = true;
          resolve(state);
        }
      };
      const reread = (why: RereadReason) => {
        if (settled) return;
        readKey(client, key).then((state) => {
          const moved = changed(state);
          options.onReread?.(why, moved);
          if (moved) done(state);
        }, () => {
          // etcd unreachable: the next recheck tries again.
        });
      };
      onAbort = () => {
        settled = true;
        reject(options.signal.reason);
      };
      if (options.signal.aborted) return onAbort();
      options.signal.addEventListener("abort", onAbort, { once: true });
      timer = setInterval(() => reread("recheck"), options.recheckMs);
      // From the revision after the one read: nothing between the read and the watch is missed.
      client
        .watch()
        .key(key)
        .startRevision(String(BigInt(known.revision) + 1n))
        .create()
        .then((w) => {
          watcher = w;
          if (settled) void w.cancel();
          w.on("delete", () => reread("event"));
          w.on("put", () => reread("event"));
          w.on("connected", () => reread("reconnect"));
          w.on("error", () => reread("reconnect"));
          options.onReread?.("watching", false);
        }, () => {
          // No watch: the rechecks alone find the change.
        });
      reread("start");
    });
  } finally {
    options.signal.removeEventListener("abort", onAbort);
    clearInterval(timer);
    await watcher?.cancel().catch(() => {});
  }
}

/** Every key under a prefix as read at a revision. */
export interface PrefixState {
  revision: string;
  kvs: IKeyValue[];
}

/**
 * Reads every key under `prefix` and calls onRead with it, then again whenever it may
 * have changed, until `signal` aborts; resolves once the first read is delivered (rejects
 * if it fails). As waitForChange, a watch alone is not trusted (etcd 3.4 watches can
 * miss events across a reconnect): its events only say when to re-read, at a revision,
 * and so do a reconnect and every recheckMs. A read older than one delivered is dropped.
 */
export async function followPrefix(client: Etcd3, prefix: Buffer, options: { recheckMs: number; signal: AbortSignal; onRead: (state: PrefixState, why: RereadReason) => void }): Promise<void> {
  const end = prefixEnd(prefix);
  const read = async (): Promise<PrefixState> => {
    const answer = await client.kv.range({ key: prefix, range_end: end });
    return { revision: String(answer.header.revision), kvs: answer.kvs };
  };
  const first = await read();
  if (options.signal.aborted) return;
  let latest = BigInt(first.revision);
  options.onRead(first, "start");
  const reread = (why: RereadReason) => {
    if (options.signal.aborted) return;
    read().then((state) => {
      const revision = BigInt(state.revision);
      if (options.signal.aborted || revision < latest) return;
      latest = revision;
      options.onRead(state, why);
    }, () => {
      // etcd unreachable: the next recheck tries again.
    });
  };
  const timer = setInterval(() => reread("recheck"), options.recheckMs);
  timer.unref();
  let watcher: Watcher | undefined;
  options.signal.addEventListener("abort", () => {
    clearInterval(timer);
    void watcher?.cancel().catch(() => {});
  }, { once: true });
  client
    .watch()
    .prefix(prefix)
    .startRevision(String(latest + 1n))
    .create()
    .then((w) => {
      watcher = w;
      if (options.signal.aborted) return void w.cancel().catch(() => {});
      w.on("put", () => reread("event"));
      w.on("delete", () => reread("event"));
      w.on("connected", () => reread("reconnect"));
      w.on("error", () => reread("reconnect"));
    }, () => {
      // No watch: the rechecks alone find the changes.
    });
}
