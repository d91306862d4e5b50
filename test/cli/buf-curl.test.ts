import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createAgent, type BatonAgent } from "../../src/agent/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { BUF, ROOT, run } from "../helpers/process.js";
import { startServer, type TestServer } from "../helpers/server.js";

// buf curl speaks the same reflection protocol as grpcurl (which cannot be installed here).
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

function curl(args: string[]) {
  return run(BUF, ["curl", "--protocol", "grpc", "--cacert", `${dir}/ca.pem`, "--cert", `${dir}/operator.pem`, "--key", `${dir}/operator.key`, ...args], { timeoutMs: 30_000 });
}

describe("buf curl over mutual TLS, schema from server reflection", () => {
  it("lists the services", async () => {
    srv = await startServer(pki);
    const out = await curl(["--list-services", `https://localhost:${srv.port}`]);
    expect(out.stderr).toBe("");
    expect(out.stdout.split("\n").filter(Boolean).sort()).toEqual(["baton.v1.Control", "baton.v1.Coordinator", "baton.v1.PerformanceMonitor", "baton.v1.ResourceManager", "grpc.health.v1.Health"]);
  });

  it("lists a service's methods through reflection v1alpha too", async () => {
    srv = await startServer(pki);
    const out = await curl(["--reflect-protocol", "grpc-v1alpha", "--list-methods", `https://localhost:${srv.port}`]);
    expect(out.stderr).toBe("");
    const methods = out.stdout.split("\n").filter(Boolean);
    expect(methods).toContain("baton.v1.Control/ListAgents");
    expect(methods).toContain("baton.v1.Coordinator/Connect");
    expect(methods).toContain("grpc.health.v1.Health/Check");
  });

  it("gets SERVING from the health check", async () => {
    srv = await startServer(pki);
    const out = await curl(["--data", "{}", `https://localhost:${srv.port}/grpc.health.v1.Health/Check`]);
    expect(out.stderr).toBe("");
    expect(JSON.parse(out.stdout)).toEqual({ status: "SERVING" });
  });

  it("calls a Control method and sees a connected agent", async () => {
    srv = await startServer(pki);
    agent = createAgent({ address: srv.address, agentId: "task_executor_1", credentials: await pki.credentials("managed_agent", "task_executor_1"), capabilities: ["python"] });
    await agent.connect();
    const out = await curl(["--data", "{}", `https://localhost:${srv.port}/baton.v1.Control/ListAgents`]);
    expect(out.stderr).toBe("");
    const body = JSON.parse(out.stdout) as { agents: Array<{ agentId: string; state: string; capabilities: string[] }> };
    expect(body.agents).toHaveLength(1);
    expect(body.agents[0]).toMatchObject({ agentId: "task_executor_1", state: "AGENT_STATE_ONLINE", capabilities: ["python"] });
  });

  it("shows a bad request's status code", async () => {
    srv = await startServer(pki);
    const out = await curl(["--data", "{}", `https://localhost:${srv.port}/baton.v1.Control/GetAgent`]);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(/invalid_argument/);
    expect(out.stderr).toMatch(/agent_id is required/);
  });
});

// buf is a Go program: Go's crypto/x509 is the strict reader here (no "_" in a PrintableString).
describe("buf curl with a managed agent's certificate", () => {
  it("checks health over mutual TLS as task_executor_1", async () => {
    srv = await startServer(pki);
    const leaf = await pki.issue("managed_agent", "task_executor_1");
    const agentDir = pki.writeFiles({ "ca.pem": pki.ca.certPem, "task_executor_1.pem": leaf.certPem, "task_executor_1.key": leaf.keyPem });
    // A managed agent may not use reflection, so the schema comes from the vendored health.proto.
    const out = await run(
      BUF,
      ["curl", "--protocol", "grpc", "--schema", `${ROOT}proto/grpc/health/v1/health.proto`, "--cacert", `${agentDir}/ca.pem`, "--cert", `${agentDir}/task_executor_1.pem`, "--key", `${agentDir}/task_executor_1.key`, "--data", "{}", `https://localhost:${srv.port}/grpc.health.v1.Health/Check`],
      { timeoutMs: 30_000 },
    );
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ status: "SERVING" });
  });
});
