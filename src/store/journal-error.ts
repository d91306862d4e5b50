/**
 * The journal cannot be used as it is (damaged, not the one this data directory wrote, or
 * held by another server): the server refuses to start, and the message names the file,
 * what is wrong and the way out. Nothing has been changed on disk.
 */
export class JournalError extends Error {
  override readonly name = "JournalError";
}

/** The way out, appended to every refusal of a damaged or foreign journal. */
export const RECOVERY_HINT =
  "nothing was changed; `baton journal check` reports, `baton journal reset` moves the journal's files aside and starts empty, `baton journal adopt` accepts the journal as it is now (a deliberate restore)";
