import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, fdatasyncSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { JournalError, RECOVERY_HINT } from "./journal-error.js";

// The state file beside the journal ("journal.state") records which journal this data
// directory holds and the last commit it acknowledged. The journal's own header carries
// the same two facts inside every transaction, so a journal that lost commits (emptied,
// WAL deleted or truncated, an older copy restored) shows a count below the state's.
//
// Two 512-byte slots, written in turn (commit n goes to slot n % 2) in place, without
// fsync: a process crash keeps the page cache, so the state is never behind the journal by
// more than the commit in flight; after a power loss it may be behind (never ahead, since it
// is written after the commit is durable), which the check accepts. A torn slot fails its
// checksum and the other slot, one commit older, is used.

const MAGIC = Buffer.from("BATONJS\x01", "latin1");
const SLOT_BYTES = 512;
const RECORD_BYTES = 8 + 16 + 8 + 16;

/** What the state file records. */
export interface JournalState {
  /** The journal's id (32 hex digits), made when it was created. */
  journalId: string;
  /** The last commit acknowledged. */
  commit: number;
}

function encode(state: JournalState): Buffer {
  const out = Buffer.alloc(RECORD_BYTES);
  MAGIC.copy(out, 0);
  Buffer.from(state.journalId, "hex").copy(out, 8);
  out.writeBigUInt64BE(BigInt(state.commit), 24);
  createHash("sha256").update(out.subarray(0, 32)).digest().copy(out, 32, 0, 16);
  return out;
}

function decode(slot: Buffer): JournalState | undefined {
  if (slot.length < RECORD_BYTES || !slot.subarray(0, 8).equals(MAGIC)) return undefined;
  const sum = createHash("sha256").update(slot.subarray(0, 32)).digest().subarray(0, 16);
  if (!sum.equals(slot.subarray(32, RECORD_BYTES))) return undefined;
  return { journalId: slot.subarray(8, 24).toString("hex"), commit: Number(slot.readBigUInt64BE(24)) };
}

/** A new journal id: 16 random bytes, hex. */
export function newJournalId(): string {
  return randomBytes(16).toString("hex");
}

/** The state recorded in `path`; undefined when there is no file. Throws when it is there but unreadable. */
export function readJournalState(path: string): JournalState | undefined {
  if (!existsSync(path)) return undefined;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new JournalError(`the journal state ${path} cannot be read: ${(err as Error).message}`);
  }
  const slots = [decode(bytes.subarray(0, SLOT_BYTES)), decode(bytes.subarray(SLOT_BYTES, 2 * SLOT_BYTES))].filter((s) => s !== undefined);
  if (slots.length === 0) throw new JournalError(`the journal state ${path} is damaged (no valid record in its ${bytes.length} bytes); ${RECOVERY_HINT}`);
  return slots.reduce((a, b) => (b.commit > a.commit ? b : a));
}

/** Writes a fresh state file (both slots), durably: a temporary file, fsync, rename, fsync of the folder. */
export function writeJournalState(path: string, state: JournalState): void {
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  const page = Buffer.alloc(2 * SLOT_BYTES);
  encode(state).copy(page, 0);
  encode(state).copy(page, SLOT_BYTES);
  try {
    const fd = openSync(tmp, "wx", 0o600);
    try {
      writeSync(fd, page, 0, page.length, 0);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  syncFolder(dirname(path));
}

/** Makes a rename or a new file in `dir` durable (a no-op where folders cannot be opened). */
export function syncFolder(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Some platforms (Windows) cannot fsync a folder; the rename is still atomic there.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The open state file of a journal in use: one slot written after each commit. */
export class JournalStateFile {
  private readonly fd: number;

  /** Opens `path` (written by writeJournalState) for updates. */
  constructor(
    readonly path: string,
    private readonly journalId: string,
  ) {
    this.fd = openSync(path, "r+");
  }

  /** Records `commit`; `durable` adds an fdatasync (at open and close; per commit the page cache is enough). */
  record(commit: number, durable = false): void {
    try {
      writeSync(this.fd, encode({ journalId: this.journalId, commit }), 0, RECORD_BYTES, (commit % 2) * SLOT_BYTES);
      if (durable) fdatasyncSync(this.fd);
    } catch (err) {
      // The commit is already durable in the journal: failing it now would lie to the caller.
      // A state left behind only weakens the check at the next start, never fails it.
      if (durable) throw err;
    }
  }

  /** Closes the file. */
  close(): void {
    closeSync(this.fd);
  }
}
