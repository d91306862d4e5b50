import { randomUUID } from "node:crypto";
import { create, fromJson, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { durationFromMs, StructSchema, timestampMs } from "@bufbuild/protobuf/wkt";
import { AgentStatusRequestSchema, type AgentStatusResponse, type CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import type { KeyRotation, SignedEnvelope } from "../../gen/baton/v1/security_pb.js";
import {
  AgentReportsSchema,
  ConnectResponseSchema,
  CoordinatorMessageSchema,
  CoordinatorMessagesSchema,
  type AgentReports,
  type ConnectResponse,
  type CoordinatorMessage,
  type CoordinatorMessages,
  type Hello,
} from "../../gen/baton/v1/session_pb.js";
import { messageBudget } from "../protocol/index.js";
import { decodeRequest, DEFAULT_TRANSPORT_LIMITS, timestampAt } from "../rpc/index.js";
import { ClockSkewError, describeSkew, openSignedBatch, seal, SEALED_DIRECTIVE_TYPE, signWith, TimestampWindowError, type Keyring, type MessageKey, type ReplayGuard } from "../security/index.js";
import { BatonError, Code, deadlineExceeded, resourceExhausted, unavailable } from "../errors.js";
import { logProtocolMessage, type Logger } from "../logging.js";
import { createAsyncQueue, type AsyncQueue, type Leave, type PeriodicWheel } from "../streams/index.js";
import { encodeBinary } from "../rpc/index.js";

/** What a session is opened with. */
export interface AgentSessionOptions {
  agentId: string;
  sessionId: string;
  hello: Hello;
  /** The SPIFFE id of the agent's certificate. */
  identity: string;
  /** The peer address. */
  peer: string;
  coordinatorId: string;
  protocolVersion: string;
  /** Ticks this session's heartbeats (and its check for a silent agent) with every other session's: one timer a coordinator, not one a session. Its period is the heartbeat interval. */
  heartbeats: PeriodicWheel;
  heartbeatMisses: number;
  maxInFlight: number;
  outboxCapacity: number;
  maxBatch: number;
  /**
   * Most bytes of messages batched into one stream message; default: what the default
   * transport limit holds (messageBudget). A message bigger than this still goes, alone.
   */
  maxBatchBytes?: number;
  logger: Logger;
  protocolLevel: "info" | "debug";
  /** Called once when the session ends, with the error that ended it (undefined: a clean end). */
  onClose: (session: AgentSession, error: BatonError | undefined) => void;
  /** Message security: batches are signed both ways and sensitive input sealed. Off when absent. */
  security?: SessionSecurity | undefined;
  /** The coordinator's clock, ms since the epoch (heard-from times, heartbeat silence); default Date.now. Stamps on the wire stay on the wall clock, which the peer's replay window checks. */
  now?: () => number;
  /** Each signed batch's measure of the agent's clock skew (agent minus coordinator, ms), with the refusal when it is beyond the window. */
  onClockSkew?: (skewMs: number, refusal: ClockSkewError | undefined) => void;
}

/** A session's message keys (its own leader keyring) and replay guard. */
export interface SessionSecurity {
  keyring: Keyring;
  replay: ReplayGuard;
  /** The sensitive input of the task a directive runs, to be sealed for the agent. */
  sensitiveInputOf: (directive: CoordinationDirective) => JsonObject | undefined;
}

/** A message ready for a batch, with its encoding (which sizes the batch and, when signed, is its payload). */
interface Encoded {
  message: CoordinatorMessage;
  bytes: Uint8Array;
}

const MESSAGES_FIELD = CoordinatorMessagesSchema.field.messages.number;

type Outgoing = { kind: "message"; message: CoordinatorMessage } | { kind: "frame"; frame: ConnectResponse } | { kind: "rotation"; rotation: KeyRotation };

interface PendingStatus {
  correlationId: string;
  resolve: (value: { response: AgentStatusResponse; roundTripMs: number }) => void;
  reject: (err: unknown) => void;
  startedAt: number;
  cleanup: () => void;
}

/** Which message a CoordinatorMessage carries, for logs ("coordination_directive"). */
export function coordinatorMessageType(message: CoordinatorMessage): string {
  switch (message.kind.case) {
    case "statusRequest":
      return "agent_status_request";
    case "directive":
      return "coordination_directive";
    case "completionAck":
      return "completion_ack";
    case "cancel":
      return "directive_cancel";
    case "keyRotation":
      return "key_rotation";
    default:
      return "unknown";
  }
}

/**
 * One agent's live stream, seen from the coordinator: an outbox that batches what is
 * queued while the stream is busy, heartbeats both ways, and status requests that wait
 * for their answers with a deadline. It touches no grpc-js object.
 */
export class AgentSession {
  readonly agentId: string;
  readonly sessionId: string;
  readonly hello: Hello;
  readonly identity: string;
  readonly peer: string;
  readonly maxInFlight: number;
  private readonly maxBatchBytes: number;
  readonly connectedAt: Date;
  lastSeen: number;
  private readonly now: () => number;
  private readonly outbox: AsyncQueue<Outgoing>;
  private readonly pendingStatus = new Map<string, PendingStatus>();
  private readonly closed = new AbortController();
  private readonly leaveHeartbeats: Leave;
  private closeError: BatonError | undefined;
  /** The key the agent is known to hold: batches are signed with it until a rotation reaches the agent. */
  private signingKey: MessageKey | undefined;
  private readonly unsubscribeRotation: (() => void) | undefined;

  constructor(private readonly options: AgentSessionOptions) {
    this.agentId = options.agentId;
    this.sessionId = options.sessionId;
    this.hello = options.hello;
    this.identity = options.identity;
    this.peer = options.peer;
    this.maxInFlight = options.maxInFlight;
    this.now = options.now ?? Date.now;
    this.connectedAt = new Date(this.now());
    this.lastSeen = this.now();
    this.maxBatchBytes = options.maxBatchBytes ?? messageBudget(DEFAULT_TRANSPORT_LIMITS);
    this.outbox = createAsyncQueue<Outgoing>({
      capacity: options.outboxCapacity,
      overflow: "error",
      name: `outbox of agent ${options.agentId}`,
    });
    this.leaveHeartbeats = options.heartbeats.join(() => this.tick());
    const security = options.security;
    if (security) {
      this.signingKey = security.keyring.current();
      // A rotation travels in order with the messages, signed by the key the agent has.
      this.unsubscribeRotation = security.keyring.onRotate((rotation) => {
        if (!this.isClosed) this.outbox.push({ kind: "rotation", rotation });
      });
    }
  }

  /** Whether batches are signed both ways on this session. */
  get signed(): boolean {
    return this.options.security !== undefined;
  }

  /** The keys handed to the agent in Welcome (secrets: never log it). */
  keyRotation(): KeyRotation | undefined {
    return this.options.security?.keyring.toRotation();
  }

  /** The replay window of signed batches, ms; undefined when message security is off. */
  get replayWindowMs(): number | undefined {
    return this.options.security?.replay.windowMs;
  }

  /**
   * Verifies and decodes a signed batch of reports from this agent (see openSignedBatch).
   * A timestamp outside the replay window is refused as clock skew (a ClockSkewError): the
   * batch is authentic and fresh on a live stream, so it is the clocks that disagree.
   */
  openReports(envelope: SignedEnvelope): AgentReports {
    const security = this.options.security;
    if (!security) throw new BatonError(Code.FAILED_PRECONDITION, "message signing is off on this coordinator; send reports unsigned");
    let batch: AgentReports;
    try {
      batch = openSignedBatch(security.keyring, security.replay, envelope, (bytes) => decodeRequest(AgentReportsSchema, bytes), this.agentId);
    } catch (err) {
      if (!(err instanceof TimestampWindowError)) throw err;
      const refusal = new ClockSkewError(
        err.offsetMs,
        err.windowMs,
        `clock skew: agent ${this.agentId}'s clock is ${describeSkew(err.offsetMs)} the coordinator's, beyond the ${err.windowMs} ms replay window, so its signed reports are refused (${err.message}); correct its clock (NTP)`,
      );
      this.options.onClockSkew?.(err.offsetMs, refusal);
      throw refusal;
    }
    this.options.onClockSkew?.(security.replay.offsetOf(timestampMs(batch.sentAt!)), undefined);
    return batch;
  }

  /** Aborted when the session ends. */
  get signal(): AbortSignal {
    return this.closed.signal;
  }

  /** Whether the session has ended. */
  get isClosed(): boolean {
    return this.closed.signal.aborted;
  }

  /** The frames to write to the agent after its Welcome: batches, heartbeats and drains. */
  async *frames(): AsyncGenerator<ConnectResponse> {
    for (;;) {
      if (this.outbox.size === 0) {
        if (this.outbox.closed) break;
        await this.outbox.wait();
        continue;
      }
      // Everything queued while the stream was busy goes out together; consecutive
      // messages share one stream message (batching with no added latency when quiet),
      // as many as maxBatch and maxBatchBytes allow.
      const items = this.outbox.drain();
      let batch: Encoded[] = [];
      let batchBytes = 0;
      const flush = (): ConnectResponse | undefined => {
        if (batch.length === 0) return undefined;
        const messages = batch;
        batch = [];
        batchBytes = 0;
        return this.batchFrame(messages);
      };
      for (const item of items) {
        if (item.kind === "rotation") {
          const pending = flush();
          if (pending) yield pending;
          yield this.batchFrame([this.encode({ $typeName: "baton.v1.CoordinatorMessage", kind: { case: "keyRotation", value: item.rotation } })]);
          // From here the agent holds the new key.
          const newest = item.rotation.keys[0]?.keyId;
          this.signingKey = (newest && this.options.security?.keyring.find(newest)) || this.signingKey;
          this.options.logger.info({ key_id: newest }, "message keys rotated");
        } else if (item.kind === "frame") {
          const pending = flush();
          if (pending) yield pending;
          yield item.frame;
        } else {
          let encoded = this.encode(item.message);
          // Each message adds its bytes plus a tag and a length prefix to the batch.
          const bytes = encoded.bytes.length + 6;
          if (batch.length > 0 && batchBytes + bytes > this.maxBatchBytes) {
            yield flush()!;
            // Sealed again under the key the next batch is signed with: the old one may have expired during the write.
            encoded = this.encode(item.message);
          }
          batch.push(encoded);
          batchBytes += bytes;
          if (batch.length >= this.options.maxBatch) yield flush()!;
        }
      }
      const rest = flush();
      if (rest) yield rest;
    }
    if (this.closeError) throw this.closeError;
  }

  /** The key batches are signed and sealed with now: the one the agent is known to hold. */
  private batchKey(security: SessionSecurity): MessageKey {
    return security.keyring.find(this.signingKey!.keyId) ?? security.keyring.current();
  }

  /** A message as it goes into a batch (its sensitive input sealed when message security is on), and its encoding. */
  private encode(message: CoordinatorMessage): Encoded {
    const security = this.options.security;
    const prepared = security ? this.sealSensitive(message, security, this.batchKey(security)) : message;
    return { message: prepared, bytes: encodeBinary(CoordinatorMessageSchema, prepared) };
  }

  /** One stream message carrying a batch: signed when message security is on. */
  private batchFrame(entries: Encoded[]): ConnectResponse {
    const head: CoordinatorMessages = create(CoordinatorMessagesSchema, { messageId: randomUUID(), sentAt: timestampAt(Date.now()), sender: this.options.coordinatorId });
    const security = this.options.security;
    if (!security) return create(ConnectResponseSchema, { kind: { case: "messages", value: { ...head, messages: entries.map((e) => e.message) } } });
    // The signed payload is the batch's own fields followed by each message as encoded to
    // size it: a repeated field's elements are just concatenated, so nothing is encoded twice.
    const writer = new BinaryWriter().raw(encodeBinary(CoordinatorMessagesSchema, head));
    for (const e of entries) writer.tag(MESSAGES_FIELD, WireType.LengthDelimited).bytes(e.bytes);
    return create(ConnectResponseSchema, { kind: { case: "signedMessages", value: signWith(this.batchKey(security), writer.finish()) } });
  }

  // Sealed at send time under the session's key, so a redelivery after a reconnect is sealed for the new keys.
  private sealSensitive(message: CoordinatorMessage, security: SessionSecurity, key: MessageKey): CoordinatorMessage {
    if (message.kind.case !== "directive") return message;
    const directive = message.kind.value;
    const sensitive = security.sensitiveInputOf(directive);
    if (!sensitive || !directive.parameters) return message;
    const sealed = seal(security.keyring, toBinary(StructSchema, fromJson(StructSchema, sensitive)), { messageId: directive.directiveId, sender: this.options.coordinatorId, messageType: SEALED_DIRECTIVE_TYPE }, key);
    return { ...message, kind: { case: "directive", value: { ...directive, parameters: { ...directive.parameters, sealed } } } };
  }

  /** Queues one message for the agent; false when the session has ended. */
  send(message: CoordinatorMessage, correlationId: string): boolean {
    if (this.isClosed) return false;
    this.logSent(message, correlationId);
    const ok = this.outbox.push({ kind: "message", message });
    if (!ok && !this.isClosed) this.close(resourceExhausted(`agent ${this.agentId} is not reading: its outbox is full`));
    return ok;
  }

  /** Queues a whole frame (heartbeat, drain). */
  sendFrame(frame: ConnectResponse): boolean {
    if (this.isClosed) return false;
    return this.outbox.push({ kind: "frame", frame });
  }

  /** Sends an AgentStatusRequest and waits for the answer, at most `timeoutMs`. */
  requestStatus(timeoutMs: number, signal?: AbortSignal, correlationId?: string): Promise<{ response: AgentStatusResponse; roundTripMs: number }> {
    if (this.isClosed) return Promise.reject(unavailable(`agent ${this.agentId} has no open session`));
    const request = create(AgentStatusRequestSchema, {
      requestId: randomUUID(),
      timestamp: timestampAt(Date.now()),
      targetAgent: this.agentId,
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(deadlineExceeded(`agent ${this.agentId} did not answer a status request within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      const onAbort = () => {
        cleanup();
        reject(signal?.reason ?? new BatonError(Code.CANCELLED, "status request cancelled"));
      };
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.pendingStatus.delete(request.requestId);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      const correlation = correlationId ?? request.requestId;
      this.pendingStatus.set(request.requestId, { correlationId: correlation, resolve, reject, startedAt: performance.now(), cleanup });
      this.send({ $typeName: "baton.v1.CoordinatorMessage", kind: { case: "statusRequest", value: request } }, correlation);
    });
  }

  /** The correlation id a pending status request was sent under (the round's, or its own id). */
  statusCorrelation(requestId: string): string {
    return this.pendingStatus.get(requestId)?.correlationId ?? requestId;
  }

  /** Settles a pending status request; false if none was waiting for it. */
  resolveStatus(response: AgentStatusResponse): boolean {
    const pending = this.pendingStatus.get(response.requestId);
    if (!pending) return false;
    pending.cleanup();
    pending.resolve({ response, roundTripMs: performance.now() - pending.startedAt });
    return true;
  }

  /** Records that the agent was heard from. */
  touch(): void {
    this.lastSeen = this.now();
  }

  /** Ends the session: with an error the stream ends with its status, else with OK. */
  close(error?: BatonError): void {
    if (this.isClosed) return;
    this.closeError = error;
    this.leaveHeartbeats();
    this.unsubscribeRotation?.();
    const reason = error ?? unavailable(`the session of agent ${this.agentId} ended`);
    for (const pending of [...this.pendingStatus.values()]) {
      pending.cleanup();
      pending.reject(unavailable(`the session of agent ${this.agentId} ended before it answered`));
    }
    this.closed.abort(reason);
    this.outbox.close();
    this.options.onClose(this, error);
  }

  private tick(): void {
    const silentFor = this.now() - this.lastSeen;
    const limit = this.options.heartbeats.periodMs * this.options.heartbeatMisses;
    if (silentFor > limit) {
      this.options.logger.warn({ silent_ms: silentFor }, "agent missed its heartbeats");
      this.close(unavailable(`no heartbeat from agent ${this.agentId} for ${silentFor} ms`));
      return;
    }
    // A literal: thousands of idle sessions send one each interval, and create() costs more than the rest of it.
    this.sendFrame({ $typeName: "baton.v1.ConnectResponse", kind: { case: "heartbeat", value: { $typeName: "baton.v1.Heartbeat", sentAt: timestampAt(Date.now()), lastSequence: 0n } } });
    // Rotates a key that has served its period, even on a quiet session.
    this.options.security?.keyring.current();
  }

  private logSent(message: CoordinatorMessage, correlationId: string): void {
    logProtocolMessage(
      this.options.logger,
      {
        correlation_id: correlationId,
        source: this.options.coordinatorId,
        destination: this.agentId,
        message_type: coordinatorMessageType(message),
      },
      "sent",
      this.options.protocolLevel,
    );
  }
}

/** The Welcome frame for a session: with the coordinator's time and, when signed, the replay window, so the agent can measure its skew. */
export function welcomeFrame(
  session: AgentSession,
  options: { heartbeatIntervalMs: number; ackTimeoutMs: number; syncIntervalMs: number; coordinatorId: string; protocolVersion: string; resumed: boolean; heartbeatMisses?: number; disconnectGraceMs?: number; leaseMs?: number; statusTimeoutMs?: number },
): ConnectResponse {
  return create(ConnectResponseSchema, {
    kind: {
      case: "welcome",
      value: {
        sessionId: session.sessionId,
        heartbeatInterval: durationFromMs(options.heartbeatIntervalMs),
        ackTimeout: durationFromMs(options.ackTimeoutMs),
        maxInFlight: session.maxInFlight,
        resumed: options.resumed,
        coordinatorId: options.coordinatorId,
        protocolVersion: options.protocolVersion,
        keys: session.keyRotation(),
        serverTime: timestampAt(Date.now()),
        ...(session.replayWindowMs !== undefined ? { replayWindow: durationFromMs(session.replayWindowMs) } : {}),
        syncInterval: durationFromMs(options.syncIntervalMs),
        // What an agent in any language would otherwise hard-code (docs/agents.md, timers).
        heartbeatMisses: options.heartbeatMisses ?? 0,
        ...(options.disconnectGraceMs !== undefined ? { disconnectGrace: durationFromMs(options.disconnectGraceMs) } : {}),
        ...(options.leaseMs !== undefined ? { lease: durationFromMs(options.leaseMs) } : {}),
        ...(options.statusTimeoutMs !== undefined ? { statusTimeout: durationFromMs(options.statusTimeoutMs) } : {}),
      },
    },
  });
}
