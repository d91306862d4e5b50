// Bad inputs on the agent session: each is refused with its status, and the server lives on.
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentials as grpcCredentials, type ChannelCredentials } from "@grpc/grpc-js";
import { AckOutcome, CompletionStatus } from "../../gen/baton/v1/coordination_pb.js";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { Coordinator as CoordinatorService } from "../../gen/baton/v1/session_pb.js";
import { createAgent, type AgentOptions } from "../../src/agent/index.js";
import { openRawSession } from "../helpers/raw-session.js";
import { Code } from "../../src/errors.js";
import { clientCredentials, createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { startServer } from "../helpers/server.js";

const fx = useFixture();
let otherPki: TestPki;
beforeAll(async () => {
  otherPki = await makePki();
});
afterAll(() => otherPki.cleanup());

const agent = (id: string, extra: Partial<AgentOptions> = {}) => fx.agent(id, { capabilities: ["python"], maxInFlight: 4, ...extra });
const channel = (creds: ChannelCredentials) => fx.channel(creds);

describe("refusals", () => {
  it("a client without a certificate is refused at the handshake", async () => {
    fx.srv = await startServer(fx.pki);
    const control = createClient(Control, channel(grpcCredentials.createSsl(Buffer.from(fx.pki.ca.certPem))));
    await expect(control.listAgents({}, { deadline: 5000 })).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    // The server keeps serving others.
    const ok = createClient(Control, channel(await fx.pki.credentials("operator", "ops")));
    await expect(ok.listAgents({})).resolves.toBeDefined();
  });

  it("a certificate from another CA is refused", async () => {
    fx.srv = await startServer(fx.pki);
    const foreign = await otherPki.issue("managed_agent", "task_executor_1");
    const creds = clientCredentials({ ca: fx.pki.ca.certPem, cert: foreign.certPem, key: foreign.keyPem });
    const a = createAgent({ address: fx.srv.address, agentId: "task_executor_1", credentials: creds });
    fx.defer(() => a.close());
    await expect(a.connect()).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    const ok = await agent("task_executor_2");
    await expect(ok.connect()).resolves.toBeDefined();
  });

  it("an agent id that differs from the certificate is PERMISSION_DENIED", async () => {
    fx.srv = await startServer(fx.pki);
    const a = createAgent({ address: fx.srv.address, agentId: "task_executor_2", credentials: await fx.pki.credentials("managed_agent", "task_executor_1") });
    fx.defer(() => a.close());
    await expect(a.connect()).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
  });

  it("an operator certificate may not open an agent session", async () => {
    fx.srv = await startServer(fx.pki);
    const a = createAgent({ address: fx.srv.address, agentId: "ops", credentials: await fx.pki.credentials("operator", "ops") });
    fx.defer(() => a.close());
    await expect(a.connect()).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
  });

  it("a first message that is not hello is INVALID_ARGUMENT", async () => {
    fx.srv = await startServer(fx.pki);
    const client = createClient(CoordinatorService, channel(await fx.pki.credentials("managed_agent", "a1")));
    const frames = client.connect((async function* () { yield { kind: { case: "heartbeat" as const, value: {} } }; })());
    await expect((async () => { for await (const _ of frames) { /* drain */ } })()).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(/first message on Connect must be hello/) });
  });

  it("a Connect that sends no hello within session.helloTimeoutMs is DEADLINE_EXCEEDED, and the next one is served", async () => {
    fx.srv = await startServer(fx.pki, { session: { helloTimeoutMs: 300 } });
    const client = createClient(CoordinatorService, channel(await fx.pki.credentials("managed_agent", "a1")));
    let release!: () => void;
    const silent = new Promise<void>((r) => (release = r));
    fx.defer(() => release());
    // The stream stays open and says nothing.
    const frames = client.connect((async function* () { await silent; })());
    await expect((async () => { for await (const _ of frames) { /* drain */ } })()).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED, details: "no hello within 300 ms of opening Connect" });
    const a = await agent("a1");
    expect((await a.connect()).sessionId).not.toBe("");
  });

  it("a hello missing its agent_id is INVALID_ARGUMENT naming the field", async () => {
    fx.srv = await startServer(fx.pki);
    const client = createClient(CoordinatorService, channel(await fx.pki.credentials("managed_agent", "a1")));
    const frames = client.connect((async function* () { yield { kind: { case: "hello" as const, value: { capabilities: ["x"] } } }; })());
    await expect((async () => { for await (const _ of frames) { /* drain */ } })()).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(/hello\.agent_id is required/) });
  });

  it("a report with a missing required field ends the session with INVALID_ARGUMENT naming it", async () => {
    fx.srv = await startServer(fx.pki);
    const client = createClient(CoordinatorService, channel(await fx.pki.credentials("managed_agent", "a1")));
    const frames = client.connect(
      (async function* () {
        yield { kind: { case: "hello" as const, value: { agentId: "a1" } } };
        await sleep(50);
        yield { kind: { case: "reports" as const, value: { reports: [{ kind: { case: "progressUpdate" as const, value: { eventId: "550e8400-e29b-41d4-a716-446655440002", sourceAgent: "a1" } } }] } } };
        await sleep(2000);
      })(),
    );
    await expect((async () => { for await (const _ of frames) { /* drain */ } })()).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: expect.stringMatching(/timestamp is required/) });
  });

  it("a report sent as another agent is PERMISSION_DENIED (unsigned session; the signed case is in test/security)", async () => {
    fx.srv = await startServer(fx.pki, { security: { messageSecurity: "off" } });
    const client = createClient(CoordinatorService, channel(await fx.pki.credentials("managed_agent", "a1")));
    const frames = client.connect(
      (async function* () {
        yield { kind: { case: "hello" as const, value: { agentId: "a1" } } };
        await sleep(50);
        yield { kind: { case: "reports" as const, value: { reports: [{ kind: { case: "directiveAck" as const, value: { directiveId: "550e8400-e29b-41d4-a716-446655440002", sourceAgent: "a2", timestamp: { seconds: 1n }, outcome: AckOutcome.ACCEPTED } } }] } } };
        await sleep(2000);
      })(),
    );
    await expect((async () => { for await (const _ of frames) { /* drain */ } })()).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
  });
});

describe("an agent acting for another agent's directive", () => {
  for (const [what, report] of [
    ["ack", (id: string) => ({ case: "directiveAck" as const, value: { directiveId: id, sourceAgent: "mallory", timestamp: { seconds: BigInt(Math.floor(Date.now() / 1000)) }, outcome: AckOutcome.ACCEPTED, attempt: 1 } })],
    ["completion", (id: string) => ({ case: "taskCompletion" as const, value: { eventId: "550e8400-e29b-41d4-a716-446655440009", directiveId: id, sourceAgent: "mallory", timestamp: { seconds: BigInt(Math.floor(Date.now() / 1000)) }, status: CompletionStatus.SUCCEEDED } })],
  ] as const) {
    it(`an ${what} for another agent's directive is PERMISSION_DENIED, and that directive still completes`, async () => {
      fx.srv = await startServer(fx.pki);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const bystander = await agent("bystander");
      await bystander.connect();
      void bystander.run(async () => {
        await gate;
        return { ok: true };
      });
      const control = createClient(Control, channel(await fx.pki.credentials("operator", "ops")));
      await control.submitTask({ task: { taskId: `victim-${what}`, requiredCapabilities: ["python"], target: { agentId: "bystander" } } });
      let directiveId = "";
      for (let i = 0; i < 250 && !directiveId; i++) {
        const { task } = await control.getTask({ taskId: `victim-${what}` });
        directiveId = task?.attempts[0]?.directiveIds[0] ?? "";
        if (!directiveId) await sleep(20);
      }
      expect(directiveId).not.toBe("");
      const mallory = await openRawSession(fx.srv.address, await fx.pki.credentials("managed_agent", "mallory"), "mallory");
      fx.defer(() => mallory.close());
      mallory.send({ kind: { case: "signedReports", value: mallory.signedReports([{ kind: report(directiveId) }]) } });
      const end = await mallory.ended;
      expect(end.code).toBe(Code.PERMISSION_DENIED);
      expect(end.details).toMatch(new RegExp(`for directive ${directiveId} of agent bystander`));
      release();
      for (let i = 0; i < 200; i++) {
        const { task } = await control.getTask({ taskId: `victim-${what}` });
        if (task?.state === TaskState.SUCCEEDED) return;
        await sleep(25);
      }
      throw new Error("the bystander's task did not complete");
    });
  }
});
