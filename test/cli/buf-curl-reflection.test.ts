import { spawn } from "node:child_process";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createAgent, type BatonAgent } from "../../src/agent/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { BUF, run } from "../helpers/process.js";
import { startServer, waitFor, waitForAsync, type TestServer } from "../helpers/server.js";

// docs/grpcurl.md's calls, with buf curl over server reflection v1 and v1alpha: list, describe
// (the methods of every service), submit, watch (the WatchEvents server stream) and health.
let pki: TestPki;
let srv: TestServer;
let dir: string;
let agent: BatonAgent | undefined;

beforeAll(async () => {
  pki = await makePki();
  const op = await pki.issue("operator", "operator");
  dir = pki.writeFiles({ "ca.pem": pki.ca.certPem, "operator.pem": op.certPem, "operator.key": op.keyPem });
});
afterAll(() => pki.cleanup());
afterEach(async () => {
  await agent?.close();
  agent = undefined;
  await srv?.stop();
});

const SERVICES = ["baton.v1.Control", "baton.v1.Coordinator", "baton.v1.PerformanceMonitor", "baton.v1.ResourceManager", "grpc.health.v1.Health"];

describe.each([["grpc-v1"], ["grpc-v1alpha"]])("buf curl over reflection %s", (reflect) => {
  const flags = () => ["curl", "--protocol", "grpc", "--reflect-protocol", reflect, "--cacert", `${dir}/ca.pem`, "--cert", `${dir}/operator.pem`, "--key", `${dir}/operator.key`];
  const curl = (args: string[]) => run(BUF, [...flags(), ...args], { timeoutMs: 60_000 });
  const url = (method = "") => `https://localhost:${srv.port}${method ? `/${method}` : ""}`;

  async function startWithAgent(): Promise<void> {
    srv = await startServer(pki);
    agent = createAgent({ address: srv.address, agentId: "task_executor_1", credentials: await pki.credentials("managed_agent", "task_executor_1"), capabilities: ["python"] });
    await agent.connect();
    void agent.run(async (directive) => ({ done: directive.directiveId.length > 0 }));
  }

  it("lists every service", async () => {
    srv = await startServer(pki);
    const out = await curl(["--list-services", url()]);
    expect(out.stderr).toBe("");
    expect(out.stdout.split("\n").filter(Boolean).sort()).toEqual(SERVICES);
  });

  it("describes every service by its methods", async () => {
    srv = await startServer(pki);
    const expected: Record<string, string> = {
      "baton.v1.Control": "baton.v1.Control/SubmitTask",
      "baton.v1.Coordinator": "baton.v1.Coordinator/Connect",
      "baton.v1.PerformanceMonitor": "baton.v1.PerformanceMonitor/GetMetrics",
      "baton.v1.ResourceManager": "baton.v1.ResourceManager/Query",
      "grpc.health.v1.Health": "grpc.health.v1.Health/Check",
    };
    // buf curl lists every method of every service (grpcurl's `describe` also prints their messages).
    const out = await curl(["--list-methods", url()]);
    expect(out.stderr).toBe("");
    const methods = out.stdout.split("\n").filter(Boolean);
    for (const service of SERVICES) expect(methods).toContain(expected[service]);
    expect(methods).toContain("baton.v1.Control/WatchEvents");
    expect(methods.every((m) => SERVICES.some((s) => m.startsWith(`${s}/`)) || m.startsWith("grpc.reflection."))).toBe(true);
  });

  it("checks health, the whole server and one service", async () => {
    srv = await startServer(pki);
    for (const data of ["{}", '{"service":"baton.v1.Coordinator"}']) {
      const out = await curl(["--data", data, url("grpc.health.v1.Health/Check")]);
      expect(out.stderr).toBe("");
      expect(JSON.parse(out.stdout)).toEqual({ status: "SERVING" });
    }
  });

  it("submits a task and reads it back succeeded", async () => {
    await startWithAgent();
    const submitted = await curl(["--data", '{"task":{"task_id":"curl-1","required_capabilities":["python"],"input":{"n":1}}}', url("baton.v1.Control/SubmitTask")]);
    expect(submitted.stderr).toBe("");
    expect(JSON.parse(submitted.stdout)).toMatchObject({ created: true, task: { spec: { taskId: "curl-1" } } });
    let task: { state: string; result?: unknown } = { state: "" };
    await waitForAsync(
      async () => {
        const got = await curl(["--data", '{"task_id":"curl-1"}', url("baton.v1.Control/GetTask")]);
        task = (JSON.parse(got.stdout) as { task: typeof task }).task;
        return task.state === "TASK_STATE_SUCCEEDED";
      },
      60_000,
      "task curl-1 to succeed, read with GetTask",
    );
    expect(task.result).toEqual({ done: true });
  });

  it("calls the Resource Manager and the Performance Monitor", async () => {
    await startWithAgent();
    const asked = JSON.stringify({ request_id: "5b0c3e1a-2f4d-4e6a-9b8c-7d6e5f4a3b2c", timestamp: new Date().toISOString() });
    const resources = await curl(["--data", asked, url("baton.v1.ResourceManager/Query")]);
    expect(resources.stderr).toBe("");
    expect(JSON.parse(resources.stdout)).toBeTypeOf("object");
    const metrics = await curl(["--data", asked, url("baton.v1.PerformanceMonitor/GetMetrics")]);
    expect(metrics.stderr).toBe("");
    expect(JSON.parse(metrics.stdout)).toBeTypeOf("object");
  });

  it("watches events: the WatchEvents server stream, replayed from a cursor then live", async () => {
    await startWithAgent();
    const submit = (id: string) => curl(["--data", JSON.stringify({ task: { task_id: id, required_capabilities: ["python"] } }), url("baton.v1.Control/SubmitTask")]);
    expect((await submit("watch-1")).stderr).toBe("");
    const child = spawn(BUF, [...flags(), "--data", '{"topics":["task.#"],"after_cursor":"1"}', url("baton.v1.Control/WatchEvents")], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    try {
      // Retained events replay first (watch-1 submitted before the watch), then the stream goes on live.
      await waitFor(() => stdout.includes('"topic": "task.watch-1.succeeded"'), 60_000, `watch-1's events on the stream (stderr: ${stderr})`);
      expect((await submit("watch-2")).stderr).toBe("");
      await waitFor(() => stdout.includes('"topic": "task.watch-2.succeeded"'), 60_000, `watch-2's live events (stderr: ${stderr})`);
      expect(stdout).toContain('"topic": "task.watch-2.pending"');
    } finally {
      child.kill("SIGTERM");
    }
  });
});
