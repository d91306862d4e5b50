import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createMemoryStore, openSqliteStore, type Store } from "../../src/store/index.js";
import { TSX } from "../helpers/process.js";

const dir = mkdtempSync(join(tmpdir(), "baton-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);

describe.each([
  ["memory", (): Store => createMemoryStore()],
  ["sqlite", (): Store => openSqliteStore({ path: join(dir, `s${++n}`, "journal.sqlite") })],
])("%s store", (_name, open) => {
  it("puts, gets and deletes", async () => {
    const s = open();
    expect(await s.write([{ type: "put", key: "a", value: enc("1") }])).toBe(true);
    expect(dec(await s.get("a"))).toBe("1");
    await s.write([{ type: "delete", key: "a" }]);
    expect(await s.get("a")).toBeUndefined();
    await s.close();
  });

  it("applies a batch all or nothing under its conditions", async () => {
    const s = open();
    await s.write([{ type: "put", key: "task/1", value: enc("x") }]);
    expect(await s.write([{ type: "put", key: "task/2", value: enc("y") }, { type: "put", key: "task/1", value: enc("z") }], [{ key: "task/1", absent: true }])).toBe(false);
    expect(await s.get("task/2")).toBeUndefined();
    expect(dec(await s.get("task/1"))).toBe("x");
    expect(await s.write([{ type: "put", key: "task/2", value: enc("y") }], [{ key: "task/2", absent: true }])).toBe(true);
    await s.close();
  });

  it("scans by prefix, in order, with paging", async () => {
    const s = open();
    for (const k of ["task/2", "task/10", "task/1", "tasks/1", "tas", "directive/1"]) await s.write([{ type: "put", key: k, value: enc(k) }]);
    expect((await s.scan("task/")).map(([k]) => k)).toEqual(["task/1", "task/10", "task/2"]);
    expect((await s.scan("task/", { startAfter: "task/1", limit: 1 })).map(([k]) => k)).toEqual(["task/10"]);
    expect((await s.scan("")).length).toBe(6);
    await s.close();
  });

  it("keeps binary values byte for byte", async () => {
    const s = open();
    const value = new Uint8Array([0, 255, 1, 128, 0]);
    await s.write([{ type: "put", key: "bin", value }]);
    expect([...(await s.get("bin"))!]).toEqual([...value]);
    await s.close();
  });

  it("refuses calls after close", async () => {
    const s = open();
    await s.close();
    await expect(s.get("a")).rejects.toThrow(/closed/);
  });
});

describe("sqlite durability", () => {
  it("bad keys are refused", async () => {
    const s = openSqliteStore({ path: join(dir, "keys", "j.sqlite") });
    await expect(s.write([{ type: "put", key: "", value: enc("x") }])).rejects.toThrow(/non-empty/);
    await expect(s.write([{ type: "put", key: "k".repeat(2000), value: enc("x") }])).rejects.toThrow(/longer than/);
    await s.close();
  });

  it("every write acknowledged before SIGKILL is there after reopening", async () => {
    const path = join(dir, "killed", "journal.sqlite");
    const child = spawn(process.execPath, ["--import", TSX, new URL("./writer-child.ts", import.meta.url).pathname, path], { stdio: ["ignore", "pipe", "inherit"] });
    let acked = -1;
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (d: Buffer) => {
        for (const m of d.toString().matchAll(/acked (\d+)/g)) acked = Number(m[1]);
        if (acked >= 200) resolve();
      });
    });
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const s = openSqliteStore({ path });
    const tasks = await s.scan("task/");
    expect(tasks.length).toBeGreaterThanOrEqual(acked + 1);
    for (let i = 0; i <= acked; i++) expect(dec(await s.get(`directive/${String(i).padStart(8, "0")}`))).toBe(`batch ${i}`);
    await s.close();
  });
});
