import { randomBytes } from "node:crypto";
import { renameSync, rmSync, writeFileSync } from "node:fs";

/**
 * Writes `content` to a temporary file beside `path`, then renames it over `path`: a reader
 * never sees half a file, and a key file has `mode` (say 0600) from its first byte.
 */
export function writeAtomic(path: string, content: string, mode: number): void {
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    writeFileSync(tmp, content, { mode, flag: "wx" });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
