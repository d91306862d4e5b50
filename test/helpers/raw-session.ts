import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ChannelCredentials } from "@grpc/grpc-js";
import {
  AgentReportSchema,
  AgentReportsSchema,
  ConnectRequestSchema,
  Coordinator as CoordinatorService,
  CoordinatorMessagesSchema,
  type ConnectRequest,
  type ConnectResponse,
  type CoordinatorMessages,
  type Welcome,
} from "../../gen/baton/v1/session_pb.js";
import type { SignedEnvelope } from "../../gen/baton/v1/security_pb.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { keyringFromRotation, signEnvelope, type Keyring } from "../../src/security/index.js";
import { createAsyncQueue } from "../../src/streams/index.js";

/** A hand-driven agent session: the test writes every frame, so it can write bad ones. */
export interface RawSession {
  welcome: Welcome;
  /** The agent's copy of the session keys (from Welcome, updated by applyRotations). */
  keyring: Keyring | undefined;
  /** Frames received after Welcome. */
  received: ConnectResponse[];
  send(frame: MessageInitShape<typeof ConnectRequestSchema>): void;
  /** A signed batch of these reports, sender and timestamp overridable. */
  signedReports(reports: Array<MessageInitShape<typeof AgentReportSchema>>, overrides?: { sender?: string; sentAtMs?: number; messageId?: string }): SignedEnvelope;
  /** Decodes a signed coordinator batch (without checking it). */
  decode(envelope: SignedEnvelope): CoordinatorMessages;
  /** Resolves with the status the stream ended with (code 0 for a clean end). */
  ended: Promise<{ code: number; details: string }>;
  close(): void;
}

/** Options of openRawSession. */
export interface RawSessionOptions {
  /** The agent's clock, ms since the epoch (default Date.now): Hello.sent_at, heartbeats and batch timestamps come from it. */
  now?: () => number;
}

/** Opens Connect as `agentId` and waits for Welcome; key rotations are applied as they arrive. */
export async function openRawSession(address: string, credentials: ChannelCredentials, agentId: string, options: RawSessionOptions = {}): Promise<RawSession> {
  const now = options.now ?? Date.now;
  const channel = createChannel(address, credentials);
  const client = createClient(CoordinatorService, channel);
  const outgoing = createAsyncQueue<ConnectRequest>({ capacity: 1000, overflow: "error", name: "raw session" });
  outgoing.push(create(ConnectRequestSchema, { kind: { case: "hello", value: { agentId, capabilities: ["python"], sentAt: timestampFromMs(now()) } } }));
  const responses = client.connect(outgoing)[Symbol.asyncIterator]();
  const first = await responses.next();
  if (first.done || first.value.kind.case !== "welcome") throw new Error("no Welcome");
  const welcome = first.value.kind.value;
  // Heartbeats keep the session alive however short the server's interval is.
  const beat = setInterval(() => outgoing.push(create(ConnectRequestSchema, { kind: { case: "heartbeat", value: { sentAt: timestampFromMs(now()) } } })), 50);
  beat.unref();
  const session: RawSession = {
    welcome,
    keyring: welcome.keys ? keyringFromRotation(welcome.keys) : undefined,
    received: [],
    send: (frame) => outgoing.push(create(ConnectRequestSchema, frame)),
    signedReports(reports, o = {}) {
      const batch = create(AgentReportsSchema, { messageId: o.messageId ?? randomUUID(), sentAt: timestampFromMs(o.sentAtMs ?? now()), sender: o.sender ?? agentId, reports: reports.map((r) => create(AgentReportSchema, r)) });
      return signEnvelope(session.keyring!, toBinary(AgentReportsSchema, batch));
    },
    decode: (envelope) => fromBinary(CoordinatorMessagesSchema, envelope.payload),
    ended: Promise.resolve({ code: 0, details: "" }),
    close: () => {
      clearInterval(beat);
      outgoing.close();
      channel.close();
    },
  };
  session.ended = (async () => {
    try {
      for (;;) {
        const next = await responses.next();
        if (next.done) return { code: 0, details: "" };
        session.received.push(next.value);
        if (next.value.kind.case === "signedMessages") {
          for (const m of session.decode(next.value.kind.value).messages) if (m.kind.case === "keyRotation") session.keyring!.apply(m.kind.value);
        }
      }
    } catch (err) {
      const e = err as { code: number; details: string };
      return { code: e.code, details: e.details };
    } finally {
      clearInterval(beat);
      channel.close();
    }
  })();
  return session;
}
