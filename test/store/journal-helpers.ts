import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildConfig, type BatonConfig } from "../../src/config.js";
import { TaskJournal } from "../../src/coordinator/task-journal.js";
import { openConfiguredStore } from "../../src/store/index.js";
import { TSX } from "../helpers/process.js";

/** A fresh base64 journal key, as `baton certs init` writes it. */
export const newJournalKey = (): string => randomBytes(32).toString("base64");

/** The store section for a SQLite journal in `dataDir`, sealed with the key in `keyFile`. */
export function storeSection(dataDir: string, keyFile: string): BatonConfig["store"] {
  return { ...buildConfig().store, kind: "sqlite", dataDir, keyFile };
}

/** Writes `<dir>/journal.key` (a new key unless given) and `<dir>/baton.json` naming `<dir>/data`; returns the config's path. */
export function journalConfigFile(dir: string, key = newJournalKey(), extra: Record<string, unknown> = {}): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "journal.key"), `${key}\n`, { mode: 0o600 });
  const path = join(dir, "baton.json");
  writeFileSync(path, JSON.stringify({ store: { kind: "sqlite", dataDir: join(dir, "data"), keyFile: join(dir, "journal.key") }, ...extra }));
  return path;
}

/** Opens the configured journal as a starting server does, loads it, closes it; the tasks it held. */
export async function startJournal(config: BatonConfig): Promise<number> {
  const journal = new TaskJournal(await openConfiguredStore(config));
  const { tasks } = await journal.load();
  await journal.close();
  return tasks.length;
}

/** A running journal-child.ts. */
export interface JournalChild {
  child: ChildProcess;
  /** The last task number it acknowledged. */
  acked: number;
  /** Resolves once it exits (its exit code, or the signal that ended it). */
  exited: Promise<number | string | null>;
}

/** Runs journal-child.ts until it has closed ("close") or holds its journal open ("hold"). */
export async function runJournalChild(configPath: string, from: number, to: number, mode: "close" | "hold", sensitive?: string): Promise<JournalChild> {
  const args = ["--import", TSX, new URL("./journal-child.ts", import.meta.url).pathname, configPath, String(from), String(to), mode, ...(sensitive ? [sensitive] : [])];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | string | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  const state: JournalChild = { child, acked: -1, exited };
  let tail = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      const lines = (tail + d.toString()).split("\n");
      tail = lines.pop()!;
      for (const line of lines) {
        const m = /^acked (\d+)$/.exec(line);
        if (m) state.acked = Number(m[1]);
        if (line === (mode === "close" ? "closed" : "holding")) resolve();
      }
    });
    child.once("exit", (code, signal) => {
      if (mode === "close" && code === 0) resolve();
      else reject(new Error(`journal child exited (${code ?? signal}) after ${state.acked} acks: ${stderr}`));
    });
  });
  if (mode === "close") await exited;
  return state;
}
