import { chmodSync, closeSync, copyFileSync, cpSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildConfig, configFromFile, type BatonConfig } from "../../src/config.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { run, ROOT, TSX } from "../helpers/process.js";
import { journalConfigFile, newJournalKey, runJournalChild, startJournal } from "./journal-helpers.js";

// 300 acknowledged tasks, then each kind of damage found in issue 10: a start must refuse,
// naming the file and what is wrong, instead of serving what is left (0 or 162 tasks).
const TASKS = 300;

let root: string;
let pki: TestPki;
// Two finished data directories, copied for each case: one stopped cleanly (WAL
// checkpointed into journal.sqlite), one whose writer was killed (the tasks in the WAL).
let closed: string;
let killed: string;
// journal.sqlite as it was after the first 100 tasks: an older copy to "restore".
let olderCopy: string;
let key: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "baton-integrity-"));
  pki = await makePki();
  key = newJournalKey();
  closed = join(root, "closed");
  await runJournalChild(journalConfigFile(closed, key), 0, 100, "close");
  olderCopy = join(root, "journal-at-100.sqlite");
  copyFileSync(join(closed, "data", "journal.sqlite"), olderCopy);
  await runJournalChild(journalConfigFile(closed, key), 100, TASKS, "close");
  killed = join(root, "killed");
  const writer = await runJournalChild(journalConfigFile(killed, key), 0, TASKS, "hold");
  expect(writer.acked).toBe(TASKS - 1);
  writer.child.kill("SIGKILL");
  expect(await writer.exited).toBe("SIGKILL");
  // What the damage cases below rely on: the killed writer's commits are in its WAL.
  expect(statSync(join(killed, "data", "journal.sqlite-wal")).size).toBeGreaterThan(0);
}, 120_000);
afterAll(() => {
  pki?.cleanup();
  rmSync(root, { recursive: true, force: true });
});

let cases = 0;
/** A copy of a finished data directory, with its own config; returns the config. */
function copyOf(from: string): { dir: string; config: BatonConfig; configPath: string } {
  const dir = join(root, `case-${++cases}`);
  cpSync(from, dir, { recursive: true });
  const configPath = journalConfigFile(dir, key);
  return { dir, config: buildConfig(configFromFile(configPath)), configPath };
}

const data = (dir: string, name: string) => join(dir, "data", name);

function overwrite(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

describe("an undamaged journal", () => {
  it("keeps all 300 acknowledged tasks after a clean stop", async () => {
    const { config } = copyOf(closed);
    expect(await startJournal(config)).toBe(TASKS);
    // And again: the check passes after its own clean close.
    expect(await startJournal(config)).toBe(TASKS);
  });

  it("keeps all 300 after its writer was killed (the tasks only in the WAL)", async () => {
    const { config } = copyOf(killed);
    expect(await startJournal(config)).toBe(TASKS);
    expect(await startJournal(config)).toBe(TASKS);
  });

  it("starts after a clean stop whose WAL is gone (the stop checkpointed it)", async () => {
    const { dir, config } = copyOf(closed);
    rmSync(data(dir, "journal.sqlite-wal"), { force: true });
    rmSync(data(dir, "journal.sqlite-shm"), { force: true });
    expect(await startJournal(config)).toBe(TASKS);
  });
});

describe("a damaged journal refuses to start, naming the file and what is wrong", () => {
  const damages: Array<[string, () => string, (dir: string) => void, RegExp]> = [
    ["a 0-byte journal.sqlite", () => closed, (dir) => truncateSync(data(dir, "journal.sqlite"), 0), /journal\.sqlite is empty/],
    ["a deleted journal.sqlite", () => closed, (dir) => rmSync(data(dir, "journal.sqlite")), /journal\.sqlite is empty/],
    ["garbage in the WAL", () => killed, (dir) => overwrite(data(dir, "journal.sqlite-wal"), Math.floor(statSync(data(dir, "journal.sqlite-wal")).size * 0.54), Buffer.alloc(8192, 0x5a)), /lost committed writes/],
    ["a truncated WAL", () => killed, (dir) => truncateSync(data(dir, "journal.sqlite-wal"), Math.floor(statSync(data(dir, "journal.sqlite-wal")).size / 2)), /lost committed writes/],
    ["a bad WAL header", () => killed, (dir) => overwrite(data(dir, "journal.sqlite-wal"), 0, Buffer.alloc(32, 0xa5)), /lost committed writes/],
    ["a deleted WAL that held committed tasks", () => killed, (dir) => {
      rmSync(data(dir, "journal.sqlite-wal"));
      rmSync(data(dir, "journal.sqlite-shm"), { force: true });
    }, /lost committed writes/],
    ["an older copy of journal.sqlite restored", () => closed, (dir) => copyFileSync(olderCopy, data(dir, "journal.sqlite")), /lost committed writes/],
    ["damaged pages", () => closed, (dir) => {
      const path = data(dir, "journal.sqlite");
      const pages = statSync(path).size / 4096;
      // Every b-tree page header after the first page: what a bad disk or a stray write leaves.
      for (let p = 1; p < pages; p++) overwrite(path, p * 4096, Buffer.alloc(12, 0xff));
    }, /journal\.sqlite is damaged/],
    ["a deleted state file", () => closed, (dir) => rmSync(data(dir, "journal.state")), /journal\.state is missing/],
  ];
  for (const [name, golden, damage, what] of damages) {
    it(`${name}`, async () => {
      const { dir, config } = copyOf(golden());
      damage(dir);
      const started = startJournal(config);
      await expect(started).rejects.toThrow(what);
      await expect(started).rejects.toThrow(data(dir, ""));
      // Refusing left the damaged files as they were, for `baton journal reset` to move aside.
      await expect(startJournal(config)).rejects.toThrow(what);
    });
  }
});

describe("baton journal", () => {
  const baton = (args: string[]) => run(process.execPath, ["--import", TSX, `${ROOT}src/main.ts`, ...args]);

  it("check reports a damaged journal (exit 1) and a sound one (exit 0)", async () => {
    const sound = copyOf(closed);
    const ok = await baton(["journal", "check", "--config", sound.configPath]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/ok/);
    const bad = copyOf(killed);
    rmSync(data(bad.dir, "journal.sqlite-wal"));
    const refused = await baton(["journal", "check", "--config", bad.configPath]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(data(bad.dir, "journal.sqlite"));
  });

  it("reset moves the damaged files aside (deleting nothing); the next start is empty and keeps what it writes", async () => {
    const { dir, config, configPath } = copyOf(killed);
    truncateSync(data(dir, "journal.sqlite-wal"), 1000);
    // The -shm is SQLite's index of the WAL, rebuilt by any reader: the others must move byte for byte.
    const before = Object.fromEntries(readdirSync(join(dir, "data")).filter((f) => f.startsWith("journal.") && !f.endsWith("-shm")).map((f) => [f, readFileSync(data(dir, f))]));
    expect(Object.keys(before).sort()).toEqual(["journal.sqlite", "journal.sqlite-wal", "journal.state"]);
    const reset = await baton(["journal", "reset", "--config", configPath]);
    expect(reset.code, reset.stderr).toBe(0);
    const aside = /moved .* to (\S+)/.exec(reset.stdout)?.[1];
    expect(aside, reset.stdout).toBeDefined();
    for (const [name, bytes] of Object.entries(before)) expect(readFileSync(join(aside!, name)).equals(bytes)).toBe(true);
    expect(await startJournal(config)).toBe(0);
    const more = await runJournalChild(configPath, 0, 5, "close");
    expect(more.acked).toBe(4);
    expect(await startJournal(config)).toBe(5);
  });

  it("adopt accepts a deliberately restored older copy", async () => {
    const { dir, config, configPath } = copyOf(closed);
    copyFileSync(olderCopy, data(dir, "journal.sqlite"));
    await expect(startJournal(config)).rejects.toThrow(/lost committed writes/);
    const adopt = await baton(["journal", "adopt", "--config", configPath]);
    expect(adopt.code, adopt.stderr).toBe(0);
    expect(await startJournal(config)).toBe(100);
  });

  it("refuses while a server holds the data directory", async () => {
    const { configPath } = copyOf(closed);
    const holder = await runJournalChild(configPath, TASKS, TASKS + 1, "hold");
    try {
      const reset = await baton(["journal", "reset", "--config", configPath]);
      expect(reset.code).toBe(1);
      expect(reset.stderr).toContain(`pid ${holder.child.pid}`);
    } finally {
      holder.child.kill("SIGKILL");
      await holder.exited;
    }
  });
});

describe("baton serve on a damaged journal", () => {
  it("exits with a message naming the file and the way out", async () => {
    const { dir } = copyOf(closed);
    for (const [name, content] of Object.entries({ "ca.pem": pki.ca.certPem, "coordinator.pem": pki.server.certPem, "coordinator.key": pki.server.keyPem })) writeFileSync(join(dir, name), content, { mode: 0o600 });
    const configPath = journalConfigFile(dir, key, { listen: "127.0.0.1:0", adminListen: "", tls: { certsDir: dir } });
    truncateSync(data(dir, "journal.sqlite"), 0);
    // A server that started anyway would run until this kills it (code null).
    const served = await run(process.execPath, ["--import", TSX, `${ROOT}src/main.ts`, "serve", "--config", configPath], { timeoutMs: 30_000 });
    expect(served.code).toBe(1);
    expect(served.stdout).not.toContain("baton serving");
    expect(served.stderr).toContain(data(dir, "journal.sqlite"));
    expect(served.stderr).toContain("baton journal reset");
  });
});

describe("an unusable data directory", () => {
  it("is named when it cannot be made (a file is in the way)", async () => {
    const blocker = join(root, "not-a-dir");
    writeFileSync(blocker, "");
    const config = buildConfig(configFromFile(journalConfigFile(join(root, "blocked"), key)));
    config.store.dataDir = join(blocker, "data");
    await expect(startJournal(config)).rejects.toThrow(`store.dataDir ${join(blocker, "data")}`);
  });

  it.skipIf(process.getuid?.() === 0)("is named when it is read-only", async () => {
    const { dir, config } = copyOf(closed);
    chmodSync(join(dir, "data"), 0o500);
    try {
      await expect(startJournal(config)).rejects.toThrow(`store.dataDir ${join(dir, "data")}`);
    } finally {
      chmodSync(join(dir, "data"), 0o700);
    }
  });
});
