// Sizes (issue 10, items 6 and 10): what the server accepts must fit every answer, event
// and directive built from it, and an oversized id is refused with a short message.
import { describe, expect, it } from "vitest";
import { create, fromJson, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { Control, TaskSpecSchema, TaskState, type Event } from "../../gen/baton/v1/control_pb.js";
import { ConnectRequestSchema, Coordinator as CoordinatorService, type ConnectRequest } from "../../gen/baton/v1/session_pb.js";
import { buildConfig, ConfigError } from "../../src/config.js";
import { Code, quote } from "../../src/errors.js";
import { createClient, type ServiceClient } from "../../src/rpc/index.js";
import { createAsyncQueue } from "../../src/streams/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer } from "../helpers/server.js";

const fx = useFixture();

// limits.maxTaskSpecBytes's default: the serialized TaskSpec, input and sensitive_input included.
const LIMIT = 1024 * 1024;

async function operator(): Promise<ServiceClient<typeof Control>> {
  return createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
}

/** An input that makes the TaskSpec of `taskId` exactly `bytes` long (serialized). */
function inputOfSpecSize(taskId: string, bytes: number): JsonObject {
  const size = (n: number) => toBinary(TaskSpecSchema, create(TaskSpecSchema, { taskId, requiredCapabilities: ["python"], input: { blob: "x".repeat(n) } })).length;
  let n = bytes - 64;
  // Length prefixes grow in steps: walk to the exact size.
  while (size(n) < bytes) n++;
  while (size(n) > bytes) n--;
  return { blob: "x".repeat(n) };
}

/** How a call ended, small enough for a failed assertion to print: its status, or "ok". */
async function outcomeOf(call: Promise<unknown>): Promise<{ code: number; details: string } | "ok"> {
  try {
    await call;
    return "ok";
  } catch (err) {
    const e = err as { code: number; details: string };
    return { code: e.code, details: e.details };
  }
}

/** Opens Connect with this Hello and resolves with how the stream ended before any Welcome. */
async function helloOutcome(agentId: string, hello: Record<string, unknown>): Promise<{ code: number; details: string } | "welcomed"> {
  const client = createClient(CoordinatorService, fx.channel(await fx.pki.credentials("managed_agent", agentId)));
  const out = createAsyncQueue<ConnectRequest>({ capacity: 10, overflow: "error", name: "hello" });
  out.push(create(ConnectRequestSchema, { kind: { case: "hello", value: { agentId, ...hello } } }));
  const ac = new AbortController();
  fx.defer(() => {
    out.close();
    ac.abort();
  });
  try {
    for await (const frame of client.connect(out, { signal: ac.signal })) {
      if (frame.kind.case === "welcome") return "welcomed";
    }
    return { code: 0, details: "" };
  } catch (err) {
    const e = err as { code: number; details: string };
    return { code: e.code, details: e.details };
  }
}

describe("task size", () => {
  it("the default limit is limits.maxTaskSpecBytes, 1 MiB", async () => {
    fx.srv = await startServer(fx.pki);
    expect(fx.srv.config.limits.maxTaskSpecBytes).toBe(LIMIT);
  });

  it("a ~3.9 MiB input is INVALID_ARGUMENT naming the field, its size and the limit, and nothing breaks", async () => {
    fx.srv = await startServer(fx.pki);
    const control = await operator();
    const big = { blob: "x".repeat(Math.floor(3.9 * 1024 * 1024)) };
    const err = await outcomeOf(control.submitTask({ task: { taskId: "too-big", requiredCapabilities: ["python"], input: big } }));
    expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT });
    const details = (err as { details: string }).details;
    expect(details.length).toBeLessThan(300);
    expect(details).toMatch(/input/);
    expect(details).toContain(String(toBinary(StructSchema, fromJson(StructSchema, big)).length)); // its size in bytes
    expect(details).toMatch(/1048576/); // the limit
    expect(details).toMatch(/limits\.maxTaskSpecBytes/);
    // Nothing was journaled, and the same channel keeps working.
    expect(await outcomeOf(control.getTask({ taskId: "too-big" }))).toMatchObject({ code: Code.NOT_FOUND });
    expect((await control.listTasks({})).tasks).toHaveLength(0);
  });

  it("the limit is a setting, checked at start against the transport's message size", async () => {
    expect(() => buildConfig({ limits: { maxTaskSpecBytes: 3 * 1024 * 1024 } })).toThrow(ConfigError);
    expect(() => buildConfig({ limits: { maxTaskSpecBytes: 3 * 1024 * 1024 } })).toThrow(/limits\.maxTaskSpecBytes/);
    expect(() => buildConfig({ limits: { maxHelloBytes: 0 } })).toThrow(/limits\.maxHelloBytes/);
    expect(buildConfig({ limits: { maxTaskSpecBytes: 8 * 1024 * 1024 }, transport: { maxReceiveMessageBytes: 32 * 1024 * 1024, maxSendMessageBytes: 32 * 1024 * 1024 } }).limits.maxTaskSpecBytes).toBe(8 * 1024 * 1024);
    fx.srv = await startServer(fx.pki, { limits: { maxTaskSpecBytes: 64 * 1024 } });
    const control = await operator();
    const refused = await outcomeOf(control.submitTask({ task: { taskId: "medium", requiredCapabilities: ["python"], input: { blob: "x".repeat(100 * 1024) } } }));
    expect(refused).toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(/65536/) });
    expect(await outcomeOf(control.submitTask({ task: { taskId: "small", requiredCapabilities: ["python"], input: { blob: "x".repeat(60 * 1024) } } }))).toBe("ok");
  });

  it("input and sensitive_input count together", async () => {
    fx.srv = await startServer(fx.pki);
    const control = await operator();
    const half = { blob: "x".repeat(600 * 1024) };
    const err = await outcomeOf(control.submitTask({ task: { taskId: "two-halves", requiredCapabilities: ["python"], input: half, sensitiveInput: half } }));
    expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(/sensitive_input/) });
  });

  it("a task at the limit is answered by SubmitTask, GetTask and ListTasks, seen by a task.# watcher, and delivered and completed", async () => {
    fx.srv = await startServer(fx.pki);
    const control = await operator();
    const watched: Event[] = [];
    const ac = new AbortController();
    fx.defer(() => ac.abort());
    let sawSucceeded!: () => void;
    const succeeded = new Promise<void>((resolve) => (sawSucceeded = resolve));
    let sawFirst!: () => void;
    const first = new Promise<void>((resolve) => (sawFirst = resolve));
    const watching = (async () => {
      for await (const { event } of control.watchEvents({ topics: ["task.#"] }, { signal: ac.signal })) {
        watched.push(event!);
        sawFirst();
        if (event!.topic.endsWith(".succeeded")) sawSucceeded();
      }
    })().catch((err: unknown) => err);
    // Subscribed once a first event comes through: submit small tasks until one is seen.
    for (let i = 0; watched.length === 0; i++) {
      await control.submitTask({ task: { taskId: `warm-up-${i}`, requiredCapabilities: ["nobody"] } });
      await Promise.race([first, new Promise((r) => setTimeout(r, 200))]);
    }

    const input = inputOfSpecSize("at-limit", LIMIT);
    expect(toBinary(TaskSpecSchema, create(TaskSpecSchema, { taskId: "at-limit", requiredCapabilities: ["python"], input }))).toHaveLength(LIMIT);
    const submitted = await control.submitTask({ task: { taskId: "at-limit", requiredCapabilities: ["python"], input } });
    expect(submitted.task?.spec?.input?.["blob"] === input["blob"]).toBe(true);
    expect((await control.getTask({ taskId: "at-limit" })).task?.spec?.input?.["blob"] === input["blob"]).toBe(true);
    expect((await control.listTasks({})).tasks.map((t) => t.spec!.taskId)).toContain("at-limit");

    const agent = await fx.agent("big-runner", { capabilities: ["python"], maxInFlight: 4 });
    const disconnects: unknown[] = [];
    agent.on("disconnected", (end) => disconnects.push(end));
    await agent.connect();
    let got = 0;
    void agent.run(async (directive) => {
      const p = directive.parameters?.kind;
      if (p?.case === "assignTask") got = JSON.stringify(p.value.input).length;
      return { ok: true };
    });
    await succeeded;
    expect(got).toBeGreaterThan(LIMIT - 1024);
    expect((await control.getTask({ taskId: "at-limit" })).task?.state).toBe(TaskState.SUCCEEDED);
    const events = watched.filter((e) => e.topic.startsWith("task.at-limit."));
    expect(events.map((e) => e.topic.split(".").pop())).toContain("succeeded");
    expect(events.map((e) => e.kind.case === "task" && e.kind.value.spec?.input?.["blob"] === input["blob"])).not.toContain(false);
    expect(disconnects).toEqual([]);
    ac.abort();
    expect(await watching).toMatchObject({ code: Code.CANCELLED });
  });

  it("six tasks of about the limit each go to one agent and complete without the session breaking", async () => {
    fx.srv = await startServer(fx.pki);
    const control = await operator();
    const ids = [0, 1, 2, 3, 4, 5].map((i) => `six-${i}`);
    for (const taskId of ids) await control.submitTask({ task: { taskId, requiredCapabilities: ["python"], input: inputOfSpecSize(taskId, LIMIT - 16) } });
    const agent = await fx.agent("six-runner", { capabilities: ["python"], maxInFlight: 8 });
    const disconnects: unknown[] = [];
    agent.on("disconnected", (end) => disconnects.push(end));
    await agent.connect();
    const done = new Set<string>();
    let allDone!: () => void;
    const finished = new Promise<void>((resolve) => (allDone = resolve));
    void agent.run(async (directive) => {
      const p = directive.parameters?.kind;
      if (p?.case === "assignTask") done.add(p.value.taskId);
      if (done.size === ids.length) allDone();
      return { ok: true };
    });
    await finished;
    for (const taskId of ids) {
      for (let i = 0; i < 500; i++) {
        if ((await control.getTask({ taskId })).task?.state === TaskState.SUCCEEDED) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect((await control.getTask({ taskId })).task?.state).toBe(TaskState.SUCCEEDED);
    }
    expect(disconnects).toEqual([]);
  });

  it("ListTasks pages by bytes: big tasks come back across pages, every one once", async () => {
    fx.srv = await startServer(fx.pki);
    const control = await operator();
    const ids = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `page-${i}`);
    for (const taskId of ids) await control.submitTask({ task: { taskId, requiredCapabilities: ["nobody"], input: inputOfSpecSize(taskId, LIMIT - 16) } });
    await control.submitTask({ task: { taskId: "small", requiredCapabilities: ["nobody"] } });
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await control.listTasks({ pageSize: 100, pageToken });
      expect(page.tasks.length).toBeGreaterThan(0);
      seen.push(...page.tasks.map((t) => t.spec!.taskId));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken);
    expect(seen).toEqual([...ids, "small"]);
    expect(pages).toBeGreaterThan(2);
  });
});

describe("Hello size", () => {
  it("a Hello with 100,000 capabilities is INVALID_ARGUMENT naming the field, and ListAgents keeps working", async () => {
    fx.srv = await startServer(fx.pki);
    const capabilities = Array.from({ length: 100_000 }, (_, i) => `capability-number-${i}`);
    for (const id of ["greedy-1", "greedy-2"]) {
      const outcome = await helloOutcome(id, { capabilities });
      expect(outcome).toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(/capabilities/) });
      expect((outcome as { details: string }).details.length).toBeLessThan(300);
    }
    const control = await operator();
    expect((await control.listAgents({})).agents.map((a) => a.agentId)).toEqual([]);
    const ok = await fx.agent("modest", { capabilities: ["python"] });
    await ok.connect();
    expect((await control.listAgents({})).agents.map((a) => a.agentId)).toEqual(["modest"]);
  });

  it("a capability, label or resource id past its length, too many labels or resources, or too big a Hello is INVALID_ARGUMENT naming the field", async () => {
    fx.srv = await startServer(fx.pki);
    const long = "c".repeat(10_000);
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ capabilities: ["python", long] }, /capabilities\[1\]/],
      [{ labels: { [long]: "v" } }, /labels/],
      [{ labels: { zone: long } }, /labels\[zone\]/],
      [{ labels: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, "v"])) }, /labels/],
      [{ resources: Array.from({ length: 1000 }, (_, i) => ({ resourceId: `r${i}`, kind: "cpu", capacity: 1 })) }, /resources/],
      [{ resources: [{ resourceId: long, kind: "cpu", capacity: 1 }] }, /resources\[0\]\.resource_id/],
      [{ userAgent: long }, /user_agent/],
      [{ capabilities: Array.from({ length: 250 }, (_, i) => `${i}-${"c".repeat(250)}`) }, /Hello is \d+ bytes/],
    ];
    for (const [i, [hello, field]] of cases.entries()) {
      const outcome = await helloOutcome(`agent-${i}`, hello);
      expect(outcome, String(field)).toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(field) });
      expect((outcome as { details: string }).details.length).toBeLessThan(300);
    }
    const control = await operator();
    expect((await control.listAgents({})).agents.map((a) => a.agentId)).toEqual([]);
  });
});

describe("ids", () => {
  const huge = "t".repeat(1024 * 1024);

  it("quote() shows at most 64 characters of a value", () => {
    expect(quote("short")).toBe('"short"');
    expect(quote("x".repeat(1000))).toBe(`"${"x".repeat(64)}"…`);
  });

  it("a 1 MB id to GetTask is INVALID_ARGUMENT with a short message, and the connection stays usable", async () => {
    fx.srv = await startServer(fx.pki);
    const control = await operator();
    const err = await outcomeOf(control.getTask({ taskId: huge }));
    expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(/task_id/) });
    expect((err as { details: string }).details.length).toBeLessThan(300);
    expect((await control.listTasks({})).tasks).toHaveLength(0);
  });

  it("every method bounds its ids, tokens and reasons", async () => {
    fx.srv = await startServer(fx.pki);
    const control = await operator();
    const calls: Array<[string, () => Promise<unknown>]> = [
      ["cancelTask task_id", () => control.cancelTask({ taskId: huge })],
      ["cancelTask reason", () => control.cancelTask({ taskId: "x", reason: huge })],
      ["resubmitTask", () => control.resubmitTask({ taskId: huge })],
      ["getAgent", () => control.getAgent({ agentId: huge })],
      ["drainAgent agent_id", () => control.drainAgent({ agentId: huge })],
      ["drainAgent reason", () => control.drainAgent({ agentId: "a", reason: huge })],
      ["getAgentStatus", () => control.getAgentStatus({ agentId: huge })],
      ["listTasks page_token", () => control.listTasks({ pageToken: huge })],
      ["submitTask required_capabilities", () => control.submitTask({ task: { taskId: "ok", requiredCapabilities: [huge] } })],
      ["submitTask target.agent_id", () => control.submitTask({ task: { taskId: "ok", target: { agentId: huge } } })],
      ["submitTask labels", () => control.submitTask({ task: { taskId: "ok", labels: { [huge]: "v" } } })],
    ];
    for (const [what, call] of calls) {
      const err = await outcomeOf(call());
      expect(err, what).toMatchObject({ code: Code.INVALID_ARGUMENT });
      expect((err as { details: string }).details.length, what).toBeLessThan(300);
    }
    expect((await control.listTasks({})).tasks).toHaveLength(0);
  });

  it("an id under the bound that names nothing is NOT_FOUND quoting only a prefix", async () => {
    fx.srv = await startServer(fx.pki);
    const control = await operator();
    const id = "n".repeat(200);
    const err = await outcomeOf(control.getAgent({ agentId: id }));
    expect(err).toMatchObject({ code: Code.NOT_FOUND });
    expect((err as { details: string }).details).not.toContain(id);
    expect((err as { details: string }).details).toContain(`"${"n".repeat(64)}"…`);
  });
});
