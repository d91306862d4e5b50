import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { AckOutcome, AgentStatusResponseSchema, type CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { AgentReportsSchema, type AgentReport } from "../../gen/baton/v1/session_pb.js";
import { createAgent, type BatonAgent } from "../../src/agent/index.js";
import { Code } from "../../src/errors.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { createKeyring, signEnvelope } from "../../src/security/index.js";
import { useFixture } from "../helpers/fixture.js";
import { openRawSession, type RawSession } from "../helpers/raw-session.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

async function raw(agentId: string): Promise<RawSession> {
  const s = await openRawSession(fx.srv.address, await fx.pki.credentials("managed_agent", agentId), agentId);
  fx.defer(() => s.close());
  return s;
}

async function sdkAgent(id: string, handler?: Parameters<BatonAgent["run"]>[0]): Promise<BatonAgent> {
  const a = createAgent({ address: fx.srv.address, agentId: id, credentials: await fx.pki.credentials("managed_agent", id), capabilities: ["python"], requireMessageSecurity: true });
  fx.defer(() => a.close());
  await a.connect();
  if (handler) void a.run(handler);
  return a;
}

async function operator() {
  const channel = createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops"));
  fx.defer(() => channel.close());
  return createClient(Control, channel);
}

function statusReport(agentId: string, requestId = randomUUID()): AgentReport {
  return { $typeName: "baton.v1.AgentReport", kind: { case: "statusResponse", value: create(AgentStatusResponseSchema, { requestId, timestamp: timestampNow(), sourceAgent: agentId }) } };
}

/** A second agent, connected through the SDK, runs a task after the attack: the server is alive and others unaffected. */
async function othersUnaffected(bystander: BatonAgent, taskId: string): Promise<void> {
  const control = await operator();
  await control.submitTask({ task: { taskId, requiredCapabilities: ["python"], target: { agentId: "bystander" } } });
  await waitFor(() => bystander.session !== undefined, 5000, "bystander still connected");
  const done = await (async () => {
    for (let i = 0; i < 200; i++) {
      const { task } = await control.getTask({ taskId });
      if (task?.state === TaskState.SUCCEEDED) return task;
      await sleep(25);
    }
    return undefined;
  })();
  expect(done?.state).toBe(TaskState.SUCCEEDED);
}

describe("signed agent reports (HMAC-SHA256 over the bytes sent)", () => {
  const attacks: Array<[string, (s: RawSession) => void, number, RegExp]> = [
    ["unsigned reports on a signed session", (s) => s.send({ kind: { case: "reports", value: { messageId: randomUUID(), sentAt: timestampNow(), sender: "mallory", reports: [statusReport("mallory")] } } }), Code.UNAUTHENTICATED, /requires signed reports/],
    [
      "a tampered signature",
      (s) => {
        const env = s.signedReports([statusReport("mallory")]);
        env.signature[0]! ^= 1;
        s.send({ kind: { case: "signedReports", value: env } });
      },
      Code.UNAUTHENTICATED,
      /signature does not verify/,
    ],
    [
      "a tampered payload",
      (s) => {
        const env = s.signedReports([statusReport("mallory")]);
        env.payload[env.payload.length - 1]! ^= 1;
        s.send({ kind: { case: "signedReports", value: env } });
      },
      Code.UNAUTHENTICATED,
      /signature does not verify/,
    ],
    [
      "a truncated signature",
      (s) => {
        const env = s.signedReports([statusReport("mallory")]);
        env.signature = env.signature.subarray(0, 16);
        s.send({ kind: { case: "signedReports", value: env } });
      },
      Code.UNAUTHENTICATED,
      /signature is 16 bytes/,
    ],
    [
      "an unknown key id",
      (s) => {
        const env = signEnvelope(createKeyring(), toBinary(AgentReportsSchema, create(AgentReportsSchema, { messageId: randomUUID(), sentAt: timestampNow(), sender: "mallory", reports: [statusReport("mallory")] })));
        s.send({ kind: { case: "signedReports", value: env } });
      },
      Code.UNAUTHENTICATED,
      /is unknown/,
    ],
    [
      "a replayed message id",
      (s) => {
        const env = s.signedReports([statusReport("mallory")]);
        s.send({ kind: { case: "signedReports", value: env } });
        s.send({ kind: { case: "signedReports", value: env } });
      },
      Code.UNAUTHENTICATED,
      /already seen/,
    ],
    ["a stale timestamp", (s) => s.send({ kind: { case: "signedReports", value: s.signedReports([statusReport("mallory")], { sentAtMs: Date.now() - 10 * 60_000 }) } }), Code.UNAUTHENTICATED, /stale/],
    ["a timestamp from the future", (s) => s.send({ kind: { case: "signedReports", value: s.signedReports([statusReport("mallory")], { sentAtMs: Date.now() + 10 * 60_000 }) } }), Code.UNAUTHENTICATED, /in the future/],
    ["a signed batch naming another agent as sender", (s) => s.send({ kind: { case: "signedReports", value: s.signedReports([statusReport("mallory")], { sender: "bystander" }) } }), Code.PERMISSION_DENIED, /arrived on the session of "mallory"/],
    [
      "an ack for another agent's directive, signed",
      (s) =>
        s.send({
          kind: {
            case: "signedReports",
            value: s.signedReports([{ $typeName: "baton.v1.AgentReport", kind: { case: "directiveAck", value: { $typeName: "baton.v1.DirectiveAck", directiveId: randomUUID(), sourceAgent: "bystander", timestamp: timestampNow(), outcome: AckOutcome.ACCEPTED, attempt: 1, reason: "", sequence: 0n } } }]),
          },
        }),
      Code.PERMISSION_DENIED,
      /may not send/,
    ],
  ];

  for (const [name, attack, code, message] of attacks) {
    it(`refuses ${name}; the server lives and other agents are unaffected`, async () => {
      fx.srv = await startServer(fx.pki);
      const bystander = await sdkAgent("bystander", async () => ({ ok: true }));
      const mallory = await raw("mallory");
      expect(mallory.welcome.keys?.keys.length).toBe(1);
      attack(mallory);
      const end = await mallory.ended;
      expect(end.code).toBe(code);
      expect(end.details).toMatch(message);
      await othersUnaffected(bystander, `after-${name.replace(/[^a-z]+/g, "-")}`);
    });
  }

  it("accepts a well-signed batch and answers status requests over it", async () => {
    fx.srv = await startServer(fx.pki);
    const mallory = await raw("honest");
    mallory.send({ kind: { case: "signedReports", value: mallory.signedReports([statusReport("honest")]) } });
    mallory.send({ kind: { case: "heartbeat", value: { sentAt: timestampNow() } } });
    await sleep(200);
    const control = await operator();
    const { agent } = await control.getAgent({ agentId: "honest" });
    expect(agent?.agentId).toBe("honest");
    // Session keys travel only inside the agent's stream: never in a log line (debug level here).
    const secret = Buffer.from(mallory.welcome.keys!.keys[0]!.secret);
    const logs = JSON.stringify(fx.srv.logs.lines);
    for (const encoding of ["base64", "hex", "base64url"] as const) expect(logs).not.toContain(secret.toString(encoding));
    mallory.close();
  });

  it("refuses a coordinator batch reflected back as the agent's reports (PERMISSION_DENIED: wrong sender)", async () => {
    // 300 misses (30 s): the raw session heartbeats only after Welcome, and a stall on a loaded machine
    // must not end it for silence (UNAVAILABLE) before it is refused for the reflected batch.
    fx.srv = await startServer(fx.pki, { session: { heartbeatIntervalMs: 100, heartbeatMisses: 300 } });
    const s = await raw("reflector");
    const control = await operator();
    // A status request round makes the coordinator send a signed batch to this agent.
    void control.getAgentStatus({ agentId: "reflector" }).catch(() => {});
    const signed = await waitFor(() => s.received.find((f) => f.kind.case === "signedMessages"), 30_000, "a signed coordinator batch");
    if (signed.kind.case !== "signedMessages") throw new Error("unreachable");
    s.send({ kind: { case: "signedReports", value: signed.kind.value } });
    const end = await s.ended;
    expect(end.code).toBe(Code.PERMISSION_DENIED);
  });

  it("refuses a key retired after a rotation, while the new key works (no session dropped by the rotation)", async () => {
    // The 100 ms tick is what rotates the key; 300 misses (30 s) so only the retired key, never silence, ends the session.
    fx.srv = await startServer(fx.pki, { session: { heartbeatIntervalMs: 100, heartbeatMisses: 300 }, security: { keyRotationMs: 300, keyGraceMs: 0 } });
    const s = await raw("rotator");
    const oldKey = s.keyring!.current();
    await waitFor(() => s.keyring!.current().keyId !== oldKey.keyId, 30_000, "a key rotation");
    // The new key is accepted: the session survives the rotation.
    s.send({ kind: { case: "signedReports", value: s.signedReports([statusReport("rotator")]) } });
    await sleep(100);
    await expect((await operator()).getAgent({ agentId: "rotator" })).resolves.toBeTruthy();
    // Sign with the old key by hand: the coordinator retired it (grace 0).
    const { createHmac } = await import("node:crypto");
    const env = s.signedReports([statusReport("rotator")]);
    env.keyId = oldKey.keyId;
    env.signature = createHmac("sha256", oldKey.secret).update(env.payload).digest();
    s.send({ kind: { case: "signedReports", value: env } });
    const end = await s.ended;
    expect(end.code).toBe(Code.UNAUTHENTICATED);
    expect(end.details).toMatch(/is retired/);
  });
});

describe("sealed sensitive input (AES-256-GCM)", () => {
  it("reaches only the agent: sealed on the wire, opened by the SDK, redacted from every answer", async () => {
    fx.srv = await startServer(fx.pki);
    let seen: unknown;
    const sdk = createAgent({ address: fx.srv.address, agentId: "vault", credentials: await fx.pki.credentials("managed_agent", "vault"), capabilities: ["python"] });
    fx.defer(() => sdk.close());
    await sdk.connect();
    const received: CoordinationDirective[] = [];
    void (async () => {
      for await (const d of sdk.directives()) {
        received.push(d.directive);
        seen = d.sensitiveInput;
        d.accept();
        d.complete({ done: true });
      }
    })();
    const control = await operator();
    const secret = `s3cret-${randomUUID()}`;
    const submitted = await control.submitTask({ task: { taskId: "sealed-1", requiredCapabilities: ["python"], input: { visible: 1 }, sensitiveInput: { apiKey: secret } } });
    expect(submitted.task?.spec?.sensitiveInput).toBeUndefined();
    await waitFor(() => seen, 5000, "the sensitive input at the agent");
    expect(seen).toEqual({ apiKey: secret });
    const sealed = received[0]!.parameters!.sealed!;
    expect(sealed.tag.length).toBe(16);
    expect(sealed.nonce.length).toBe(12);
    expect(Buffer.from(sealed.ciphertext).includes(Buffer.from(secret))).toBe(false);
    const { task } = await control.getTask({ taskId: "sealed-1" });
    expect(task?.spec?.input).toEqual({ visible: 1 });
    expect(task?.spec?.sensitiveInput).toBeUndefined();
    const listed = await control.listTasks({});
    expect(JSON.stringify(listed.tasks.map((t) => t.spec?.sensitiveInput))).not.toContain(secret);
    expect(JSON.stringify(fx.srv.logs.lines)).not.toContain(secret);
  });

  it("is refused with FAILED_PRECONDITION when message security is off", async () => {
    fx.srv = await startServer(fx.pki, { security: { messageSecurity: "off" } });
    const control = await operator();
    await expect(control.submitTask({ task: { taskId: "sealed-2", sensitiveInput: { k: "v" } } })).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION, details: expect.stringMatching(/needs message security/) });
  });
});
