import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { create, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, StructSchema, timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { Server } from "@grpc/grpc-js";
import { Action } from "../../gen/baton/v1/common_pb.js";
import { AckOutcome, CoordinationDirectiveSchema, type DirectiveAck } from "../../gen/baton/v1/coordination_pb.js";
import type { SealedPayload, SignedEnvelope } from "../../gen/baton/v1/security_pb.js";
import { AgentReportsSchema, ConnectResponseSchema, Coordinator as CoordinatorService, CoordinatorMessagesSchema, type ConnectResponse } from "../../gen/baton/v1/session_pb.js";
import { createAgent, type BatonAgent, type SessionEnd } from "../../src/agent/index.js";
import { Code } from "../../src/errors.js";
import { createLogger } from "../../src/logging.js";
import { adaptService, serverCredentials } from "../../src/rpc/index.js";
import { SEALED_DIRECTIVE_TYPE, createKeyring, seal, signEnvelope, verifyEnvelope, type Keyring } from "../../src/security/index.js";
import { useFixture } from "../helpers/fixture.js";
import { waitFor } from "../helpers/server.js";

// The coordinator is the only sender of sealed payloads and signed batches, so these bad
// inputs are aimed at the agent SDK: a real gRPC server on port 0 plays a coordinator
// that sends exactly the bytes each test wants.

const COORDINATOR = "fake-coordinator";
const fx = useFixture();

interface Fake {
  address: string;
  keyring: Keyring;
  acks: DirectiveAck[];
}

/** Starts a coordinator double that welcomes with keys, then sends what `script` returns. */
async function fakeCoordinator(script: (keyring: Keyring) => ConnectResponse[]): Promise<Fake> {
  const keyring = createKeyring();
  const acks: DirectiveAck[] = [];
  const service = adaptService(
    CoordinatorService,
    {
      async *connect(requests) {
        const iterator = requests[Symbol.asyncIterator]();
        await iterator.next();
        yield create(ConnectResponseSchema, { kind: { case: "welcome", value: { sessionId: randomUUID(), coordinatorId: COORDINATOR, heartbeatInterval: durationFromMs(5000), keys: keyring.toRotation() } } });
        for (const frame of script(keyring)) yield frame;
        for (;;) {
          const next = await iterator.next();
          if (next.done) return;
          if (next.value.kind.case === "signedReports") {
            const reports = fromBinary(AgentReportsSchema, verifyEnvelope(keyring, next.value.kind.value));
            for (const r of reports.reports) if (r.kind.case === "directiveAck") acks.push(r.kind.value);
          }
        }
      },
    },
    { logger: createLogger({ level: "silent" }) },
  );
  const server = new Server();
  server.addService(service.definition, service.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", serverCredentials({ ca: fx.pki.ca.certPem, cert: fx.pki.server.certPem, key: fx.pki.server.keyPem }), (err, p) => (err ? reject(err) : resolve(p))),
  );
  fx.defer(() => server.forceShutdown());
  return { address: `localhost:${port}`, keyring, acks };
}

function directiveFrame(keyring: Keyring, mutate: (sealed: SealedPayload, directiveId: string) => SealedPayload): { frame: ConnectResponse; directiveId: string } {
  const directiveId = randomUUID();
  const plaintext = toBinary(StructSchema, fromJson(StructSchema, { token: "t0ps3cret" }));
  const sealed = mutate(seal(keyring, plaintext, { messageId: directiveId, sender: COORDINATOR, messageType: SEALED_DIRECTIVE_TYPE }), directiveId);
  const directive = create(CoordinationDirectiveSchema, { directiveId, timestamp: timestampNow(), targetAgent: "a1", action: Action.ASSIGN_TASK, parameters: { kind: { case: "assignTask", value: { taskId: "t1" } }, sealed }, sequence: 1n, attempt: 1 });
  return { frame: signedBatch(keyring, [directive]), directiveId };
}

function signedBatch(keyring: Keyring, directives: Array<ReturnType<typeof create<typeof CoordinationDirectiveSchema>>>, sentAtMs = Date.now()): ConnectResponse {
  const batch = create(CoordinatorMessagesSchema, { messageId: randomUUID(), sentAt: timestampFromMs(sentAtMs), sender: COORDINATOR, messages: directives.map((value) => ({ kind: { case: "directive" as const, value } })) });
  return create(ConnectResponseSchema, { kind: { case: "signedMessages", value: signEnvelope(keyring, toBinary(CoordinatorMessagesSchema, batch)) } });
}

async function agentOf(fake: Fake): Promise<{ agent: BatonAgent; inputs: unknown[]; ends: SessionEnd[] }> {
  const agent = createAgent({ address: fake.address, agentId: "a1", credentials: await fx.pki.credentials("managed_agent", "a1"), reconnect: false });
  fx.defer(() => agent.close());
  const inputs: unknown[] = [];
  const ends: SessionEnd[] = [];
  agent.on("disconnected", (end) => ends.push(end));
  await agent.connect();
  void (async () => {
    for await (const d of agent.directives()) {
      inputs.push(d.sensitiveInput);
      d.accept();
    }
  })();
  return { agent, inputs, ends };
}

describe("the agent SDK opens sealed parameters and refuses tampered ones", () => {
  it("opens a well-sealed directive and hands its sensitive input to the application", async () => {
    const fake = await fakeCoordinator((k) => [directiveFrame(k, (s) => s).frame]);
    const { inputs } = await agentOf(fake);
    await waitFor(() => inputs.length > 0, 5000, "the directive");
    expect(inputs[0]).toEqual({ token: "t0ps3cret" });
    await waitFor(() => fake.acks.length > 0, 5000, "the ack");
    expect(fake.acks[0]!.outcome).toBe(AckOutcome.ACCEPTED);
  });

  const cases: Array<[string, (s: SealedPayload, id: string, k: Keyring) => SealedPayload, RegExp]> = [
    ["tampered ciphertext", (s) => ({ ...s, ciphertext: Uint8Array.from(s.ciphertext, (b, i) => (i === 0 ? b ^ 1 : b)) }), /does not authenticate/],
    ["a short (12-byte) tag", (s) => ({ ...s, tag: s.tag.subarray(0, 12) }), /tag is 12 bytes/],
    ["a tampered tag", (s) => ({ ...s, tag: Uint8Array.from(s.tag, (b, i) => (i === 15 ? b ^ 0x80 : b)) }), /does not authenticate/],
    ["an unknown key id", (s) => ({ ...s, keyId: "00000000deadbeef" }), /is unknown/],
    ["a payload sealed for another directive", (s, _id, k) => seal(k, new Uint8Array([1, 2, 3]), { messageId: randomUUID(), sender: COORDINATOR, messageType: SEALED_DIRECTIVE_TYPE }), /does not authenticate/],
  ];
  for (const [name, mutate, reason] of cases) {
    it(`rejects a directive with ${name}, without handing it to the application, and keeps the session`, async () => {
      let fakeKeyring!: Keyring;
      const fake = await fakeCoordinator((k) => {
        fakeKeyring = k;
        return [directiveFrame(k, (s, id) => mutate(s, id, k)).frame];
      });
      const { agent, inputs } = await agentOf(fake);
      await waitFor(() => fake.acks.length > 0, 5000, "the rejection");
      expect(fakeKeyring).toBeDefined();
      expect(fake.acks[0]!.outcome).toBe(AckOutcome.REJECTED);
      expect(fake.acks[0]!.reason).toMatch(reason);
      expect(inputs).toEqual([]);
      expect(agent.session).toBeDefined();
    });
  }
});

describe("the agent SDK verifies the coordinator's signed batches", () => {
  const cases: Array<[string, (k: Keyring) => ConnectResponse[], RegExp]> = [
    [
      "a tampered signature",
      (k) => {
        const frame = directiveFrame(k, (s) => s).frame;
        (frame.kind.value as SignedEnvelope).signature[3]! ^= 1;
        return [frame];
      },
      /signature does not verify/,
    ],
    [
      "a replayed batch",
      (k) => {
        const frame = directiveFrame(k, (s) => s).frame;
        return [frame, frame];
      },
      /already seen/,
    ],
    ["a stale batch", (k) => [signedBatch(k, [], Date.now() - 3_600_000)], /stale/],
    ["an unsigned batch on a signed session", () => [create(ConnectResponseSchema, { kind: { case: "messages", value: { messageId: randomUUID(), sentAt: timestampNow(), sender: COORDINATOR } } })], /unsigned messages/],
  ];
  for (const [name, script, reason] of cases) {
    it(`ends the session on ${name} with UNAUTHENTICATED`, async () => {
      const fake = await fakeCoordinator(script);
      const { ends } = await agentOf(fake);
      const end = await waitFor(() => ends[0], 5000, "the session to end");
      expect(end.code).toBe(Code.UNAUTHENTICATED);
      expect(end.message).toMatch(reason);
    });
  }
});
