import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { prepareDevelopmentFiles, serveConfig, storeFromUrl } from "../../src/cli/serve.js";
import { createLogger } from "../../src/logging.js";
import { ConfigError } from "../../src/config.js";
import { baton, CLI_MS, jsonLines } from "./cli-helpers.js";

// `baton serve --store <url>` picks the journal: SQLite (the default), memory, or etcd.

describe("--store", () => {
  it("names SQLite, memory or etcd endpoints and a prefix", () => {
    expect(storeFromUrl("sqlite")).toEqual({ kind: "sqlite" });
    expect(storeFromUrl("sqlite:./data-2")).toEqual({ kind: "sqlite", dataDir: "./data-2" });
    expect(storeFromUrl("memory")).toEqual({ kind: "memory" });
    expect(storeFromUrl("etcd://127.0.0.1:2379")).toEqual({ kind: "etcd", etcd: { endpoints: ["http://127.0.0.1:2379"] } });
    expect(storeFromUrl("etcds://a:2379,b:2379/team-a")).toEqual({ kind: "etcd", etcd: { endpoints: ["https://a:2379", "https://b:2379"], prefix: "team-a/" } });
    for (const bad of ["etcd://", "etcd://host", "sqlite:", "postgres://x:1"]) expect(() => storeFromUrl(bad)).toThrow(ConfigError);
  });

  it("reaches the configuration from the command line, and a bad one exits 78 saying what to write", { timeout: CLI_MS * 2 }, async () => {
    const print = await baton(["config", "print", "--store", "etcd://127.0.0.1:2379,127.0.0.1:22379/ns", "-o", "json"]);
    expect(print.code, print.stderr).toBe(0);
    const { config, origin } = jsonLines(print.stdout)[0]!;
    expect(config.store.kind).toBe("etcd");
    expect(config.store.etcd).toMatchObject({ endpoints: ["http://127.0.0.1:2379", "http://127.0.0.1:22379"], prefix: "ns/" });
    expect(origin["store.kind"]).toMatch(/flag/);
    const bad = await baton(["serve", "--store", "etcd://nowhere"]);
    expect(bad.code).toBe(78);
    expect(bad.stderr).toMatch(/host:port/);
  });

  it("--dev-certs makes the journal key for an etcd journal too, once, in the certificates folder every replica shares", async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-devkey-"));
    const logger = createLogger({ level: "silent" });
    try {
      const flags = { "dev-certs": true, "certs-dir": join(dir, "certs") };
      const replica = serveConfig({ ...flags, store: "etcd://127.0.0.1:2379" }, {});
      await prepareDevelopmentFiles(replica, logger);
      const key = readFileSync(join(dir, "certs", "journal.key"), "utf8");
      expect(Buffer.from(key.trim(), "base64")).toHaveLength(32);
      // A second replica on the same folder finds it and keeps it: both seal with one key.
      await prepareDevelopmentFiles(serveConfig({ ...flags, store: "etcd://127.0.0.1:2379" }, {}), logger);
      expect(readFileSync(join(dir, "certs", "journal.key"), "utf8")).toBe(key);
      // A memory journal keeps nothing at rest: no key is made for it.
      const memory = { "dev-certs": true, "certs-dir": join(dir, "memory-certs") };
      await prepareDevelopmentFiles(serveConfig({ ...memory, store: "memory" }, {}), logger);
      expect(existsSync(join(dir, "memory-certs", "journal.key"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
