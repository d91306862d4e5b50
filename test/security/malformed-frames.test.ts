import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Client, Metadata, type ServiceError } from "@grpc/grpc-js";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { createAgent } from "../../src/agent/index.js";
import { Code } from "../../src/errors.js";
import { createClient } from "../../src/rpc/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { startServer, type TestServer } from "../helpers/server.js";

let pki: TestPki;
let srv: TestServer;
const raw: Client[] = [];

beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => pki.cleanup());
afterEach(async () => {
  for (const c of raw.splice(0)) c.close();
  await srv?.stop();
});

async function rawClient(role: "operator" | "managed_agent", name: string): Promise<Client> {
  const c = new Client(srv.address, await pki.credentials(role, name));
  raw.push(c);
  return c;
}

const same = (b: Buffer) => b;

function unary(client: Client, path: string, bytes: Buffer): Promise<ServiceError | undefined> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, same, same, bytes, new Metadata(), {}, (err) => resolve(err ?? undefined));
  });
}

describe("malformed input", () => {
  it.each([
    ["a truncated varint", Buffer.from([0x08, 0xff])],
    ["a length past the end", Buffer.from([0x0a, 0x20, 0x61])],
    ["a wrong wire type for a string field", Buffer.from([0x0d, 0x01, 0x02, 0x03, 0x04])],
    ["invalid UTF-8 in a string", Buffer.from([0x0a, 0x02, 0xc3, 0x28])],
  ])("%s is INVALID_ARGUMENT and the server keeps serving", async (_name, bytes) => {
    srv = await startServer(pki);
    const client = await rawClient("operator", "ops");
    const err = await unary(client, "/baton.v1.Control/GetAgent", bytes);
    expect(err?.code).toBe(Code.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/malformed baton.v1.GetAgentRequest/);
    const control = createClient(Control, client);
    await expect(control.listAgents({})).resolves.toBeDefined();
  });

  it("a malformed frame on Connect ends that stream only", async () => {
    srv = await startServer(pki);
    const healthy = createAgent({ address: srv.address, agentId: "healthy", credentials: await pki.credentials("managed_agent", "healthy") });
    await healthy.connect();
    const client = await rawClient("managed_agent", "bad");
    const call = client.makeBidiStreamRequest("/baton.v1.Coordinator/Connect", same, same, new Metadata(), {});
    const status = new Promise<ServiceError>((resolve) => call.on("error", resolve));
    call.on("data", () => {});
    call.write(Buffer.from([0x0a, 0x7f, 0x01]));
    const err = await status;
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    const { response } = await srv.server.coordinator.requestStatus("healthy", { timeoutMs: 2000 });
    expect(response.sourceAgent).toBe("healthy");
    await healthy.close();
  });

  it("a message missing a required field is INVALID_ARGUMENT naming it", async () => {
    srv = await startServer(pki);
    const control = createClient(Control, await rawClient("operator", "ops"));
    await expect(control.getAgent({})).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(/agent_id is required/) });
  });

  it("an unknown method is UNIMPLEMENTED", async () => {
    srv = await startServer(pki);
    const err = await unary(await rawClient("operator", "ops"), "/baton.v1.Control/NoSuchMethod", Buffer.alloc(0));
    expect(err?.code).toBe(Code.UNIMPLEMENTED);
  });

  it("an unknown agent is NOT_FOUND", async () => {
    srv = await startServer(pki);
    const control = createClient(Control, await rawClient("operator", "ops"));
    await expect(control.getAgent({ agentId: "ghost" })).rejects.toMatchObject({ code: Code.NOT_FOUND });
  });

  it("a message over the size limit is RESOURCE_EXHAUSTED", async () => {
    srv = await startServer(pki, { transport: { maxReceiveMessageBytes: 1024 } as never, limits: { maxTaskSpecBytes: 512, maxHelloBytes: 512 } });
    const control = createClient(Control, await rawClient("operator", "ops"));
    await expect(control.getAgent({ agentId: "x".repeat(4096) })).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
  });
});
