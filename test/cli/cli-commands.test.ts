import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { useFixture } from "../helpers/fixture.js";
import { freePort } from "../helpers/process.js";
import { startServer, waitForAsync } from "../helpers/server.js";
import { baton, jsonLines, operatorFiles, tempDir } from "./cli-helpers.js";

const fx = useFixture();

/** A connected agent that runs each directive until `release` is called (it reports 50% first). */
async function heldAgent(id: string, capabilities = ["python"]) {
  const agent = await fx.agent(id, { capabilities });
  await agent.connect();
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  void agent.run(async (_d, ctx) => {
    ctx.progress(50);
    await released;
    return { ok: true };
  });
  fx.defer(() => release());
  return { agent, release: () => release() };
}

describe("baton task, against a real server", () => {
  it("submits, gets, lists, cancels; -o json and -o yaml parse; a refused resubmit names its gRPC status and exits 1", async () => {
    fx.srv = await startServer(fx.pki);
    const op = await operatorFiles(fx.pki);
    const cli = (...args: string[]) => baton([...args, ...op.flags(fx.srv.address)]);
    const submit = await cli("task", "submit", "t1", "-c", "python", "--priority", "high", "--label", "team=ops", "--input", '{"n":1}', "-o", "json");
    expect(submit.code, submit.stderr).toBe(0);
    expect(jsonLines(submit.stdout)[0]).toMatchObject({ spec: { taskId: "t1", requiredCapabilities: ["python"], priority: "PRIORITY_HIGH", labels: { team: "ops" }, input: { n: 1 } }, state: "TASK_STATE_PENDING" });
    const get = await cli("task", "get", "t1", "-o", "yaml");
    expect(get.code, get.stderr).toBe(0);
    expect(parseYaml(get.stdout)).toMatchObject({ spec: { taskId: "t1" }, state: "TASK_STATE_PENDING" });
    expect((await cli("task", "submit", "t2", "-o", "json")).code).toBe(0);
    const list = await cli("task", "list", "-o", "json");
    expect(jsonLines(list.stdout).map((t) => t.spec.taskId)).toEqual(["t1", "t2"]);
    const table = await cli("task", "list", "-o", "table", "--state", "pending");
    expect(table.stdout).toMatch(/^TASK\s+STATE\s+PRIORITY/);
    expect(table.stdout).toMatch(/t1\s+pending\s+high/);
    const cancel = await cli("task", "cancel", "t1", "--reason", "not needed", "-o", "json");
    expect(jsonLines(cancel.stdout)[0]).toMatchObject({ state: "TASK_STATE_CANCELLED" });
    const resubmit = await cli("task", "resubmit", "t2");
    expect(resubmit.code).toBe(1);
    expect(resubmit.stderr).toMatch(/^baton: FAILED_PRECONDITION: /);
    const missing = await cli("task", "get", "nope");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('NOT_FOUND: no task "nope"');
  });

  it("task explain says why a pending task waits, agent by agent", async () => {
    fx.srv = await startServer(fx.pki);
    const op = await operatorFiles(fx.pki);
    await heldAgent("a1", ["python"]);
    const cli = (...args: string[]) => baton([...args, ...op.flags(fx.srv.address)]);
    expect((await cli("task", "submit", "needs-gpu", "-c", "gpu")).code).toBe(0);
    const json = await cli("task", "explain", "needs-gpu", "-o", "json");
    expect(json.code, json.stderr).toBe(0);
    const res = jsonLines(json.stdout)[0]!;
    expect(res.agents[0]).toMatchObject({ agentId: "a1" });
    expect(JSON.stringify(res.agents[0].obstacles)).toContain("OBSTACLE_KIND_CAPABILITY_MISSING");
    const table = await cli("task", "explain", "needs-gpu", "-o", "table");
    expect(table.stdout).toContain("task needs-gpu: pending");
    expect(table.stdout).toMatch(/a1\s+online.*blocked.*gpu/);
  });
});

describe("baton agent, round and events, against a real server", () => {
  it("lists, gets, asks the status of and drains an agent; lists and gets rounds; streams events resumed from a cursor", async () => {
    fx.srv = await startServer(fx.pki);
    const op = await operatorFiles(fx.pki);
    const held = await heldAgent("a1");
    const cli = (...args: string[]) => baton([...args, ...op.flags(fx.srv.address)]);
    const list = await cli("agent", "list", "-o", "json");
    expect(list.code, list.stderr).toBe(0);
    expect(jsonLines(list.stdout)).toMatchObject([{ agentId: "a1", state: "AGENT_STATE_ONLINE", capabilities: ["python"] }]);
    expect(jsonLines((await cli("agent", "get", "a1", "-o", "json")).stdout)[0]).toMatchObject({ agentId: "a1" });
    const status = await cli("agent", "status", "a1", "-o", "json");
    expect(status.code, status.stderr).toBe(0);
    expect(jsonLines(status.stdout)[0]).toHaveProperty("status.sourceAgent", "a1");

    expect((await cli("task", "submit", "r1", "-c", "python")).code).toBe(0);
    await waitForAsync(async () => fx.srv.server.coordinator.getTask("r1").state === 3, 30_000, "task r1 running on a1");
    const rounds = jsonLines((await cli("round", "list", "-o", "json")).stdout);
    const round = rounds.find((r) => (r.taskIds ?? []).includes("r1"));
    expect(round, JSON.stringify(rounds)).toBeDefined();
    const one = await cli("round", "get", round!.roundId, "-o", "json");
    expect(one.code, one.stderr).toBe(0);
    expect(jsonLines(one.stdout)[0]).toMatchObject({ roundId: round!.roundId });
    expect((await cli("round", "get", "no-such-round")).stderr).toContain("NOT_FOUND: no round");

    // Resume: events after cursor 1 are the ones the log kept since; --count ends the stream.
    const events = await cli("events", "task.#", "--after", "1", "--count", "2", "-o", "json");
    expect(events.code, events.stderr).toBe(0);
    const got = jsonLines(events.stdout);
    expect(got).toHaveLength(2);
    expect(got.every((e) => e.topic.startsWith("task.") && Number(e.cursor) > 1)).toBe(true);
    const bad = await cli("events", "task.##bad");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT: .*task\.##bad/);

    const drain = await cli("agent", "drain", "a1", "--reason", "maintenance", "-o", "json");
    expect(drain.code, drain.stderr).toBe(0);
    expect(jsonLines(drain.stdout)[0]).toMatchObject({ agentId: "a1", state: "AGENT_STATE_DRAINING" });
    const undrain = await cli("agent", "undrain", "a1", "-o", "json");
    expect(undrain.code, undrain.stderr).toBe(0);
    expect(jsonLines(undrain.stdout)[0]).toMatchObject({ agentId: "a1", state: "AGENT_STATE_ONLINE" });
    const unknown = await cli("agent", "undrain", "nobody");
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/NOT_FOUND/);
    held.release();
  });
});

describe("baton contexts", () => {
  it("add, list, use and remove under XDG_CONFIG_HOME; commands then need no certificate flags; flags and BATON_CONTEXT override", async () => {
    fx.srv = await startServer(fx.pki);
    const op = await operatorFiles(fx.pki);
    const home = tempDir("baton-xdg-");
    fx.defer(home.remove);
    const env = { XDG_CONFIG_HOME: home.dir };
    const add = await baton(["context", "add", "dev", "--address", fx.srv.address, "--ca", op.ca, "--cert", op.cert, "--key", op.key, "--description", "the test server", "-o", "json"], env);
    expect(add.code, add.stderr).toBe(0);
    expect(jsonLines(add.stdout)[0]).toMatchObject({ name: "dev", address: fx.srv.address, selected: true });
    // The first context added is selected: no flags needed.
    const list = await baton(["task", "list", "-o", "json"], env);
    expect(list.code, list.stderr).toBe(0);
    expect((await baton(["context", "add", "other", "--address", "localhost:1", "--ca", op.ca, "--cert", op.cert, "--key", op.key], env)).code).toBe(0);
    const contexts = jsonLines((await baton(["context", "list", "-o", "json"], env)).stdout);
    expect(contexts.map((c) => [c.name, c.selected])).toEqual([["dev", true], ["other", false]]);
    // BATON_CONTEXT picks another; its coordinator is not there: 69.
    const away = await baton(["task", "list"], { ...env, BATON_CONTEXT: "other" });
    expect(away.code, away.stderr).toBe(69);
    expect(away.stderr).toContain("UNAVAILABLE: the coordinator at localhost:1 is unavailable");
    // A flag overrides the context's address.
    expect((await baton(["task", "list", "--context", "other", "--address", fx.srv.address], env)).code).toBe(0);
    const unknown = await baton(["context", "use", "dve"], env);
    expect(unknown.code).toBe(78);
    expect(unknown.stderr).toMatch(/no context "dve" \(did you mean dev\?\)/);
    expect((await baton(["context", "use", "other"], env)).code).toBe(0);
    expect(jsonLines((await baton(["context", "list", "-o", "json"], env)).stdout).find((c) => c.selected)?.name).toBe("other");
    expect((await baton(["context", "remove", "other"], env)).code).toBe(0);
    expect(jsonLines((await baton(["context", "list", "-o", "json"], env)).stdout).map((c) => c.name)).toEqual(["dev"]);
  });
});

describe("baton exit codes: 2 usage, 78 configuration, 69 unavailable", () => {
  it("usage mistakes exit 2, with did-you-mean for a subcommand", async () => {
    const typo = await baton(["tsk", "list"]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/unknown command 'tsk'[\s\S]*Did you mean task\?/);
    expect((await baton(["task", "get"])).code).toBe(2);
    expect((await baton(["task", "list", "-o", "xml"])).code).toBe(2);
    expect((await baton(["task"])).code).toBe(2);
    expect((await baton(["serve", "--help"])).code).toBe(0);
  });

  it("bad settings exit 78 naming them: a log level, a policy file, an unknown setting (with did-you-mean), missing certificate files", async () => {
    const cwd = tempDir("baton-exit-");
    fx.defer(cwd.remove);
    const level = await baton(["serve", "--listen", "127.0.0.1:0", "--dev-certs"], { BATON_LOG_LEVEL: "loud", BATON_ADMIN_LISTEN: "" }, cwd.dir);
    expect(level.code, level.stderr).toBe(78);
    expect(level.stderr).toContain('log.level must be "fatal", "error", "warn", "info", "debug", "trace" or "silent", got "loud"');
    writeFileSync(join(cwd.dir, "policy.json"), JSON.stringify({ roles: { wizard: ["tasks.read"] } }));
    const policy = await baton(["serve", "--listen", "127.0.0.1:0", "--dev-certs"], { BATON_POLICY_FILE: "policy.json", BATON_ADMIN_LISTEN: "", BATON_STORE: "memory" }, cwd.dir);
    expect(policy.code, policy.stderr).toBe(78);
    expect(policy.stderr).toMatch(/unknown role "wizard"/);
    writeFileSync(join(cwd.dir, "baton.json"), JSON.stringify({ session: { heartbeatIntervalMss: 1000 } }));
    const check = await baton(["config", "check", "baton.json"], {}, cwd.dir);
    expect(check.code).toBe(78);
    expect(check.stderr).toContain("unknown setting session.heartbeatIntervalMss (did you mean session.heartbeatIntervalMs?)");
    const certs = await baton(["task", "list", "--ca", join(cwd.dir, "no-ca.pem")], {}, cwd.dir);
    expect(certs.code).toBe(78);
    expect(certs.stderr).toMatch(/cannot read the CA certificate .*no-ca.pem.*--ca/);
  });

  it("no coordinator at the address exits 69", async () => {
    const op = await operatorFiles(fx.pki);
    const out = await baton(["agent", "list", ...op.flags(`localhost:${await freePort()}`)]);
    expect(out.code, out.stderr).toBe(69);
    expect(out.stderr).toMatch(/^baton: UNAVAILABLE: /);
  });
});

describe("baton config", () => {
  it("print names where each value came from; check accepts a good file; schema covers every setting with its default", async () => {
    const cwd = tempDir("baton-config-");
    fx.defer(cwd.remove);
    writeFileSync(join(cwd.dir, "baton.json"), JSON.stringify({ session: { heartbeatIntervalMs: 2000 } }));
    const print = await baton(["config", "print", "--config", "baton.json", "--listen", "127.0.0.1:7000", "-o", "json"], { BATON_LOG_LEVEL: "debug", BATON_JOURNAL_KEY: Buffer.alloc(32, 1).toString("base64") }, cwd.dir);
    expect(print.code, print.stderr).toBe(0);
    const { config, origin } = jsonLines(print.stdout)[0]!;
    expect(config.listen).toBe("127.0.0.1:7000");
    expect(origin).toMatchObject({ listen: "flag --listen", "log.level": "env BATON_LOG_LEVEL", "session.heartbeatIntervalMs": "file baton.json", coordinatorId: "default", "tls.caFile": "default (tls.certsDir)" });
    // A secret is shown as set, never printed.
    expect(config.store.key).toBe("(set)");
    const table = await baton(["config", "print", "--changed", "--listen", "127.0.0.1:7000", "-o", "table"], {}, cwd.dir);
    expect(table.stdout).toMatch(/listen\s+"127.0.0.1:7000"\s+flag --listen/);
    const typo = await baton(["config", "print", "--changed", "-o", "json"], { BATON_LISTN: "127.0.0.1:1" }, cwd.dir);
    expect(typo.stderr).toContain("BATON_LISTN is not a setting's variable, so it changes nothing (did you mean BATON_LISTEN?)");
    expect(jsonLines(typo.stdout)[0]).toEqual({ settings: [] });
    const ok = await baton(["config", "check", "baton.json"], {}, cwd.dir);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain("ok: baton.json is a valid baton configuration (1 settings set");
    const schema = JSON.parse((await baton(["config", "schema"])).stdout) as Record<string, any>;
    const { defaultConfig, settingsList } = await import("../../src/config.js");
    const defaults = defaultConfig() as unknown as Record<string, any>;
    for (const [path] of settingsList()) {
      const parts = path.split(".");
      const node = parts.reduce<Record<string, any>>((s, k) => s.properties[k], schema);
      expect(node, path).toBeDefined();
      expect(node.default, path).toEqual(parts.reduce((o, k) => o[k], defaults));
    }
    expect(schema.properties.session.additionalProperties).toBe(false);
    expect(schema.properties.log.properties.level.enum).toContain("debug");
  });
});
