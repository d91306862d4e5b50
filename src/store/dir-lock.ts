import { randomUUID } from "node:crypto";
import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { JournalError } from "./journal-error.js";

// One server per data directory: "<dir>/baton.lock" names the holder (pid, host, a nonce).
// It is made complete under a temporary name and linked into place, so it is never seen
// half-written and link's EEXIST makes taking it exclusive (O_EXCL semantics). Node has
// no fcntl/flock, and the lock must survive nothing: a holder killed with SIGKILL leaves
// its file, which the next server takes over once process.kill(pid, 0) says the pid is gone.

/** The lock file's name in a data directory. */
export const LOCK_FILE = "baton.lock";

/** Who holds a data directory. */
export interface LockHolder {
  pid: number;
  host: string;
  nonce: string;
  since: string;
}

/** A held data directory; release() when done. */
export interface DirectoryLock {
  /** The lock file. */
  readonly path: string;
  /** Removes the lock file if it is still this holder's. */
  release(): void;
}

// Locks this process holds, by lock path: its own pid on a lock file is live only if listed
// here (in a container every start may be pid 1, so a pid alone cannot tell).
const held = new Map<string, string>();

function readHolder(path: string): LockHolder | undefined | "vanished" {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "vanished";
    throw err;
  }
  try {
    const v = JSON.parse(text) as Partial<LockHolder>;
    if (Number.isSafeInteger(v.pid) && typeof v.host === "string" && typeof v.nonce === "string") return v as LockHolder;
  } catch {
    // Not ours (or not a lock): judged stale below, as a holder would have written it whole.
  }
  return undefined;
}

// Whether the holder runs: for this host only; a lock of another host cannot be judged here.
function isLive(path: string, holder: LockHolder): boolean {
  if (holder.pid === process.pid) return held.has(path);
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

// Moves a stale lock out of the way. If another starter took the name between our read and
// the rename, we moved its fresh lock: put it back, and the loop sees it held.
function takeOver(path: string, stale: LockHolder | undefined): void {
  const aside = `${path}.stale-${randomUUID()}`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  const moved = readHolder(aside);
  if (stale && typeof moved === "object" && moved.nonce !== stale.nonce) {
    try {
      linkSync(aside, path);
    } catch {
      // A third starter took the name meanwhile: it holds the directory now.
    }
  }
  rmSync(aside, { force: true });
}

/** Takes `dir` for this process, or throws a JournalError naming the directory and the holder. `setting` names the directory in messages. */
export function lockDirectory(dir: string, setting = "store.dataDir"): DirectoryLock {
  const path = resolve(join(dir, LOCK_FILE));
  const mine: LockHolder = { pid: process.pid, host: hostname(), nonce: randomUUID(), since: new Date().toISOString() };
  const tmp = `${path}.${mine.nonce}.tmp`;
  try {
    writeFileSync(tmp, `${JSON.stringify(mine)}\n`, { flag: "wx", mode: 0o600 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new JournalError(`${setting} ${dir} is not writable (${e.code ?? e.message}): the server keeps its journal and lock there`);
  }
  try {
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        linkSync(tmp, path);
        held.set(path, mine.nonce);
        return { path, release: () => release(path, mine.nonce) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const holder = readHolder(path);
      if (holder === "vanished") continue;
      if (holder && holder.host !== mine.host) {
        throw new JournalError(`${setting} ${dir} is locked by a baton on host ${holder.host} (pid ${holder.pid}, since ${holder.since}), which cannot be checked from ${mine.host}; if no server runs there on this directory, remove ${path}`);
      }
      if (holder && isLive(path, holder)) {
        throw new JournalError(`${setting} ${dir} is in use by another baton server (pid ${holder.pid}, since ${holder.since}; lock file ${path}): one server per data directory`);
      }
      takeOver(path, holder);
    }
    throw new JournalError(`${setting} ${dir}: could not take the lock ${path} (other servers keep taking it)`);
  } finally {
    rmSync(tmp, { force: true });
  }
}

function release(path: string, nonce: string): void {
  if (held.get(path) !== nonce) return;
  held.delete(path);
  const holder = readHolder(path);
  // Someone may have judged us dead and taken over (a pid reused): their lock stays.
  if (typeof holder === "object" && holder.nonce === nonce) rmSync(path, { force: true });
}
