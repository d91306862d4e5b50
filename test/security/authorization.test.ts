import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Client, Metadata, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import type { DescService } from "@bufbuild/protobuf";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { PerformanceMonitor } from "../../gen/baton/v1/performance_monitor_pb.js";
import { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { Coordinator as CoordinatorService } from "../../gen/baton/v1/session_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { Code } from "../../src/errors.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { CAPABILITIES, createPolicy, loadPolicy, METHOD_CAPABILITIES, PolicyError, ROLES, type RoleName } from "../../src/security/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer } from "../helpers/server.js";

const fx = useFixture();

const REFLECTION = ["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"];
const SERVICES: DescService[] = [CoordinatorService, Control, ResourceManager, PerformanceMonitor, Health];
const paths = [...SERVICES.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`)), ...REFLECTION];

/** Calls any method with raw bytes; resolves with the status code (OK = 0) the server ended it with. */
function rawCall(creds: ChannelCredentials, path: string, streaming: boolean): Promise<{ code: number; details: string }> {
  const client = new Client(fx.srv.address, creds);
  fx.defer(() => client.close());
  const id = (b: Buffer) => b;
  return new Promise((resolve) => {
    const done = (err: ServiceError | null) => resolve(err ? { code: err.code, details: err.details } : { code: 0, details: "" });
    if (streaming) {
      const call = client.makeBidiStreamRequest(path, id, id, new Metadata(), { deadline: Date.now() + 1000 });
      call.on("error", done);
      call.on("status", (s) => s.code === 0 && done(null));
      call.on("data", () => {});
      call.end();
    } else {
      client.makeUnaryRequest(path, id, id, Buffer.alloc(0), new Metadata(), { deadline: Date.now() + 1000 }, (err) => done(err));
    }
  });
}

describe("the capability policy", () => {
  it("names a capability for every method the server serves, and every capability is held by some role", () => {
    for (const path of paths) expect(METHOD_CAPABILITIES[path], path).toBeDefined();
    for (const capability of CAPABILITIES) {
      expect(ROLES.some((role) => createPolicy().allows(role, capability)), capability).toBe(true);
    }
  });

  it("grants least privilege by default", () => {
    const policy = createPolicy();
    expect(policy.allows("managed_agent", "agent.connect")).toBe(true);
    expect(policy.allows("managed_agent", "tasks.submit")).toBe(false);
    expect(policy.allows("managed_agent", "reflection")).toBe(false);
    expect(policy.allows("operator", "agent.connect")).toBe(false);
    expect(policy.allows("operator", "tasks.cancel")).toBe(true);
    expect(policy.allows("performance_monitor", "resources.reserve")).toBe(false);
    expect(policy.allows("coordinator", "resources.reserve")).toBe(true);
    // Naming another caller (baton-forwarded-identity): the coordinators only.
    for (const role of ROLES) expect(policy.allows(role, "control.forward"), role).toBe(role === "coordinator");
  });

  it("refuses a policy file with an unknown role, an unknown capability, or bad JSON, naming the file", () => {
    const dir = fx.pki.writeFiles({ "roles.json": JSON.stringify({ roles: { wizard: ["tasks.read"] } }), "caps.json": JSON.stringify({ roles: { operator: ["tasks.raed"] } }), "bad.json": "{", "keys.json": JSON.stringify({ rules: {} }) });
    expect(() => loadPolicy(join(dir, "roles.json"))).toThrow(PolicyError);
    expect(() => loadPolicy(join(dir, "roles.json"))).toThrow(/unknown role "wizard"/);
    expect(() => loadPolicy(join(dir, "caps.json"))).toThrow(/roles.operator\[0\] "tasks.raed" matches no capability/);
    expect(() => loadPolicy(join(dir, "bad.json"))).toThrow(/bad.json/);
    expect(() => loadPolicy(join(dir, "keys.json"))).toThrow(/unknown keys: rules/);
    expect(() => loadPolicy(join(dir, "missing.json"))).toThrow(/cannot read the policy file/);
  });
});

describe("one interceptor enforces it for every service", () => {
  // Each role tries every method; exactly what its capabilities allow gets past the interceptor.
  it.each(ROLES.map((r) => [r]))("role %s is refused every method it lacks the capability for, with PERMISSION_DENIED", async (role) => {
    fx.srv = await startServer(fx.pki);
    const creds = await fx.pki.credentials(role as RoleName, `${role}-1`);
    const policy = createPolicy();
    for (const path of paths) {
      const capability = METHOD_CAPABILITIES[path]!;
      const streaming = path.endsWith("/Connect") || path.endsWith("/ServerReflectionInfo");
      const status = await rawCall(creds, path, streaming);
      if (policy.allows(role as RoleName, capability)) {
        // Past the interceptor: whatever the handler makes of empty bytes, it is not a refusal.
        expect([Code.PERMISSION_DENIED, Code.UNAUTHENTICATED].includes(status.code) && /capability/.test(status.details), `${role} ${path}: ${status.details}`).toBe(false);
      } else {
        expect(status, `${role} ${path}`).toMatchObject({ code: Code.PERMISSION_DENIED, details: expect.stringContaining(`lacks the capability ${capability}`) });
      }
    }
  });

  it("logs and counts every refusal; the server keeps serving", async () => {
    fx.srv = await startServer(fx.pki);
    const agentControl = createClient(Control, createChannel(fx.srv.address, await fx.pki.credentials("managed_agent", "a1")));
    await expect(agentControl.submitTask({ task: { taskId: "x" } })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED, details: expect.stringMatching(/spiffe:\/\/baton.local\/managed_agent\/a1 \(role managed_agent\) lacks the capability tasks.submit/) });
    await expect(agentControl.cancelTask({ taskId: "x" })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
    const health = createClient(Health, createChannel(fx.srv.address, await fx.pki.credentials("managed_agent", "a2")));
    await expect(health.check({})).resolves.toBeTruthy();
    const metrics = await (await fetch(`http://127.0.0.1:${fx.srv.server.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/baton_auth_refusals_total\{code="PERMISSION_DENIED",role="managed_agent",capability="tasks.submit"\} 1/);
    expect(metrics).toMatch(/baton_auth_refusals_total\{code="PERMISSION_DENIED",role="managed_agent",capability="tasks.cancel"\} 1/);
    const logged = fx.srv.logs.lines.filter((l) => l.msg === "call refused" && l.capability === "tasks.submit");
    expect(logged[0]).toMatchObject({ level: "warn", code: "PERMISSION_DENIED", role: "managed_agent", identity: "spiffe://baton.local/managed_agent/a1", method: "/baton.v1.Control/SubmitTask" });
    const ops = createClient(Control, createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops")));
    await expect(ops.listAgents({})).resolves.toBeTruthy();
  });

  it("follows a policy file: a role granted more may do more, a role narrowed may do less", async () => {
    const dir = fx.pki.writeFiles({ "policy.json": JSON.stringify({ roles: { managed_agent: ["agent.connect", "health.check", "tasks.read"], operator: ["tasks.read"] } }) });
    fx.srv = await startServer(fx.pki, { security: { policyFile: join(dir, "policy.json") } });
    const agentControl = createClient(Control, createChannel(fx.srv.address, await fx.pki.credentials("managed_agent", "a1")));
    await expect(agentControl.listTasks({})).resolves.toBeTruthy();
    const ops = createClient(Control, createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops")));
    await expect(ops.listTasks({})).resolves.toBeTruthy();
    await expect(ops.submitTask({ task: { taskId: "t" } })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
  });

  it("refuses reflection to an agent but serves it to an operator", async () => {
    fx.srv = await startServer(fx.pki);
    expect(await rawCall(await fx.pki.credentials("managed_agent", "a1"), REFLECTION[0]!, true)).toMatchObject({ code: Code.PERMISSION_DENIED, details: expect.stringContaining("reflection") });
    expect((await rawCall(await fx.pki.credentials("operator", "ops"), REFLECTION[0]!, true)).code).toBe(Code.OK);
  });

  it("a server that fails to load its policy does not start", async () => {
    const dir = fx.pki.writeFiles({ "policy.json": JSON.stringify({ roles: { operator: ["nope"] } }) });
    await expect(startServer(fx.pki, { security: { policyFile: join(dir, "policy.json") } })).rejects.toThrow(PolicyError);
  });
});
