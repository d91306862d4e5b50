import { randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { Control, TaskSchema, TaskState } from "../../gen/baton/v1/control_pb.js";
import type { CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import { createAgent } from "../../src/agent/index.js";
import { certs } from "../../src/cli/index.js";
import { buildConfig, configFromEnv, ConfigError, type ConfigOverrides } from "../../src/config.js";
import { TaskJournal } from "../../src/coordinator/task-journal.js";
import { Code } from "../../src/errors.js";
import { createSecretBox, openConfiguredStore, openSqliteStore } from "../../src/store/index.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";
import { newJournalKey, storeSection } from "./journal-helpers.js";

// Issue 9 item 9: sensitive_input lay in plain text in data/journal.sqlite-wal.

const fx = useFixture();
let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "baton-secrets-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

let dirs = 0;
function journalDir(): { dataDir: string; keyFile: string } {
  const dir = join(root, `j${++dirs}`);
  const keyFile = join(root, `j${dirs}.key`);
  writeFileSync(keyFile, `${newJournalKey()}\n`, { mode: 0o600 });
  return { dataDir: join(dir, "data"), keyFile };
}

const sqlite = (dataDir: string, keyFile: string): ConfigOverrides => ({ store: storeSection(dataDir, keyFile) });

async function operator(srv: TestServer) {
  const channel = createChannel(srv.address, await fx.pki.credentials("operator", "ops"));
  fx.defer(() => channel.close());
  return createClient(Control, channel);
}

/** Every file of the data directory (journal.sqlite, its WAL, ...) that holds `needle` in its raw bytes. */
function filesHolding(dataDir: string, needle: string): string[] {
  return readdirSync(dataDir).filter((f) => statSync(join(dataDir, f)).isFile() && readFileSync(join(dataDir, f)).includes(Buffer.from(needle)));
}

describe("sensitive_input at rest", () => {
  it("is never in the journal's files in plain text; a restart reads it back and the agent receives it sealed", async () => {
    const { dataDir, keyFile } = journalDir();
    const secret = `s3cret-${randomUUID()}`;
    fx.srv = await startServer(fx.pki, sqlite(dataDir, keyFile));
    let control = await operator(fx.srv);
    // No agent can run it yet: it waits in the journal.
    await control.submitTask({ task: { taskId: "vault-1", requiredCapabilities: ["vault"], input: { visible: "plain-marker" }, sensitiveInput: { apiKey: secret } } });
    // The task is there (the WAL holds it), the secret is not, in any file.
    expect(filesHolding(dataDir, "plain-marker")).toContain("journal.sqlite-wal");
    expect(filesHolding(dataDir, secret)).toEqual([]);
    await fx.srv.stop();
    expect(filesHolding(dataDir, "plain-marker")).toContain("journal.sqlite");
    expect(filesHolding(dataDir, secret)).toEqual([]);

    fx.srv = await startServer(fx.pki, sqlite(dataDir, keyFile));
    control = await operator(fx.srv);
    const agent = createAgent({ address: fx.srv.address, agentId: "vault", credentials: await fx.pki.credentials("managed_agent", "vault"), capabilities: ["vault"] });
    fx.defer(() => agent.close());
    let seen: unknown;
    const received: CoordinationDirective[] = [];
    await agent.connect();
    void (async () => {
      for await (const d of agent.directives()) {
        received.push(d.directive);
        seen = d.sensitiveInput;
        d.accept();
        d.complete({ done: true });
      }
    })();
    await waitFor(() => seen, 10_000, "the sensitive input at the agent");
    expect(seen).toEqual({ apiKey: secret });
    expect(Buffer.from(received[0]!.parameters!.sealed!.ciphertext).includes(Buffer.from(secret))).toBe(false);
    await waitFor(() => fx.srv.server.coordinator.getTask("vault-1").state === TaskState.SUCCEEDED, 10_000, "the task done");
    expect((await control.getTask({ taskId: "vault-1" })).task?.spec?.sensitiveInput).toBeUndefined();
    expect(filesHolding(dataDir, secret)).toEqual([]);
  });

  it("a start with another key refuses, naming the key setting", async () => {
    const { dataDir, keyFile } = journalDir();
    fx.srv = await startServer(fx.pki, sqlite(dataDir, keyFile));
    await (await operator(fx.srv)).submitTask({ task: { taskId: "vault-2", requiredCapabilities: ["vault"], sensitiveInput: { k: "v" } } });
    await fx.srv.stop();
    const otherKey = join(root, "other.key");
    writeFileSync(otherKey, `${newJournalKey()}\n`, { mode: 0o600 });
    await expect(startServer(fx.pki, sqlite(dataDir, otherKey))).rejects.toThrow(new RegExp(`sealed with key \\w+.*store\\.keyFile ${otherKey}`));
  });

  it("without a key it serves, and refuses only a task with sensitive_input: FAILED_PRECONDITION naming store.keyFile and how to make one", async () => {
    const { dataDir } = journalDir();
    const missing = join(root, "nowhere", "journal.key");
    fx.srv = await startServer(fx.pki, sqlite(dataDir, missing));
    const control = await operator(fx.srv);
    const refused = await control.submitTask({ task: { taskId: "vault-nokey", requiredCapabilities: ["vault"], sensitiveInput: { k: "v" } } }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: Code.FAILED_PRECONDITION });
    expect((refused as { details: string }).details).toMatch(new RegExp(`store\\.keyFile \\(${missing} does not exist\\).*baton certs journal-key`));
    // Nothing was written for it, and other work goes on.
    await expect(control.getTask({ taskId: "vault-nokey" })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    expect((await control.submitTask({ task: { taskId: "plain", requiredCapabilities: ["vault"] } })).created).toBe(true);
  });

  it("rotates: a new key first and the old one after reads the journal and seals it anew; then the old key can go", async () => {
    const { dataDir, keyFile } = journalDir();
    const oldKey = readFileSync(keyFile, "utf8").trim();
    fx.srv = await startServer(fx.pki, sqlite(dataDir, keyFile));
    await (await operator(fx.srv)).submitTask({ task: { taskId: "vault-3", requiredCapabilities: ["vault"], sensitiveInput: { k: "rotated" } } });
    await fx.srv.stop();
    const newKey = newJournalKey();
    writeFileSync(keyFile, `${newKey}\n${oldKey}\n`, { mode: 0o600 });
    fx.srv = await startServer(fx.pki, sqlite(dataDir, keyFile));
    await fx.srv.stop();
    writeFileSync(keyFile, `${newKey}\n`, { mode: 0o600 });
    fx.srv = await startServer(fx.pki, sqlite(dataDir, keyFile));
    expect(fx.srv.server.coordinator.getTask("vault-3")?.spec?.sensitiveInput).toEqual({ k: "rotated" });
  });

  it("the memory store needs no key (nothing rests)", async () => {
    fx.srv = await startServer(fx.pki);
    await (await operator(fx.srv)).submitTask({ task: { taskId: "vault-4", requiredCapabilities: ["vault"], sensitiveInput: { k: "v" } } });
  });
});

describe("sealed inputs in the journal's records", () => {
  const task = (taskId: string, sensitiveInput?: Record<string, string>) => create(TaskSchema, { spec: { taskId, requiredCapabilities: ["vault"], ...(sensitiveInput ? { sensitiveInput } : {}) }, state: TaskState.PENDING });

  it("a journal written with the input in the task record (before sealing) is sealed at its first load", async () => {
    const { dataDir, keyFile } = journalDir();
    const config = buildConfig({ store: storeSection(dataDir, keyFile) });
    const store = await openConfiguredStore(config);
    // What an earlier baton wrote: the whole task, input included, in one record.
    await store.write([{ type: "put", key: "task/old-1", value: toBinary(TaskSchema, task("old-1", { token: "legacy-plain" })) }]);
    const journal = new TaskJournal(store);
    const { tasks } = await journal.load();
    expect(tasks[0]!.spec!.sensitiveInput).toEqual({ token: "legacy-plain" });
    expect(Buffer.from((await store.get("task/old-1"))!).includes("legacy-plain")).toBe(false);
    expect(await store.get("sealed-input/old-1")).toBeDefined();
    await journal.close();
    const again = new TaskJournal(await openConfiguredStore(config));
    expect((await again.load()).tasks[0]!.spec!.sensitiveInput).toEqual({ token: "legacy-plain" });
    await again.close();
  });

  it("a sealed input moved to another task does not open", async () => {
    const { dataDir } = journalDir();
    const box = createSecretBox([Buffer.alloc(32, 1)], "a test key");
    const path = join(dataDir, "journal.sqlite");
    const journal = new TaskJournal(openSqliteStore({ path, secrets: box }));
    await journal.load();
    await journal.commit({ tasks: [task("a", { token: "for-a" }), task("b", { token: "for-b" })] });
    await journal.close();
    const store = openSqliteStore({ path, secrets: box });
    const sealedA = (await store.get("sealed-input/a"))!;
    await store.write([{ type: "put", key: "sealed-input/b", value: sealedA }]);
    await expect(new TaskJournal(store).load()).rejects.toThrow(/task\/b\/sensitive_input.*does not authenticate/);
    await store.close();
  });

  it("a durable store opened without a key refuses a task with sensitive_input (FAILED_PRECONDITION naming store.keyFile)", async () => {
    const { dataDir } = journalDir();
    const journal = new TaskJournal(openSqliteStore({ path: join(dataDir, "journal.sqlite") }));
    await journal.load();
    await expect(journal.commit({ tasks: [task("c", { token: "x" })] })).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION, message: expect.stringMatching(/store\.keyFile/) });
    await journal.commit({ tasks: [task("d")] });
    await journal.close();
  });
});

describe("the journal key's settings", () => {
  it("BATON_JOURNAL_KEY must be base64 of 32 bytes, and is never echoed", () => {
    expect(() => buildConfig(configFromEnv({ BATON_JOURNAL_KEY: "c2hvcnQ=" }))).toThrow(ConfigError);
    expect(() => buildConfig(configFromEnv({ BATON_JOURNAL_KEY: "c2hvcnQ=" }))).toThrow(/store\.key \(BATON_JOURNAL_KEY\)/);
    expect(() => buildConfig(configFromEnv({ BATON_JOURNAL_KEY: "c2hvcnQ=" }))).not.toThrow(/c2hvcnQ/);
    expect(buildConfig(configFromEnv({ BATON_JOURNAL_KEY: newJournalKey() })).store.key).toHaveLength(44);
    expect(buildConfig({ tls: { certsDir: "/etc/baton" } }).store.keyFile).toBe("/etc/baton/journal.key");
  });

  it("baton certs init makes certs/journal.key (0600), and never replaces it, even with --force", async () => {
    const dir = join(root, "certs");
    await certs("init", { dir }, {});
    const path = join(dir, "journal.key");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const made = readFileSync(path, "utf8");
    expect(Buffer.from(made.trim(), "base64")).toHaveLength(32);
    await certs("init", { dir, force: true }, {});
    expect(readFileSync(path, "utf8")).toBe(made);
  });
});
