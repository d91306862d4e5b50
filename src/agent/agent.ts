import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { create, fromBinary, toJson, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, StructSchema, timestampFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { ChannelCredentials } from "@grpc/grpc-js";
import { AgentState, ProgressStatus, type ResourceSchema } from "../../gen/baton/v1/common_pb.js";
import { AckOutcome, CompletionStatus, type AgentStatusRequest, type CoordinationDirective, type ProgressMetrics, type TaskCompletion } from "../../gen/baton/v1/coordination_pb.js";
import {
  AgentReportsSchema,
  Coordinator,
  ConnectRequestSchema,
  CoordinatorMessagesSchema,
  type AgentReport,
  type ConnectRequest,
  type ConnectResponse,
  type CoordinatorMessage,
  type CoordinatorMessages,
  type Drain,
  type Welcome,
} from "../../gen/baton/v1/session_pb.js";
import type { SignedEnvelope } from "../../gen/baton/v1/security_pb.js";
import { BatonError, Code, LEADER_TRAILER, toBatonError, unavailable } from "../errors.js";
import { createLogger, type Logger } from "../logging.js";
import { PROTOCOL_VERSION } from "../protocol/index.js";
import { clientChannelOptions, createChannel, createClient, decodeRequest, type Channel } from "../rpc/index.js";
import {
  ClockSkewError,
  createReplayGuard,
  DEFAULT_REPLAY_WINDOW_MS,
  describeSkew,
  keyringFromRotation,
  open,
  openSignedBatch,
  SEALED_DIRECTIVE_TYPE,
  signEnvelope,
  TimestampWindowError,
  type Keyring,
  type ReplayGuard,
} from "../security/index.js";
import { createAsyncQueue, delay, type AsyncQueue } from "../streams/index.js";
import { backoffMs, finalRefusal, type SessionEnd } from "./reconnect.js";
import { encodeBinary } from "../rpc/index.js";

/** How an agent connects and what it offers. */
export interface AgentOptions {
  /** The coordinator, "localhost:50051" (dial localhost, not 127.0.0.1, so TLS names match). */
  address: string;
  /**
   * The other coordinators of a replica set. A follower's refusal names the leader (the
   * baton-leader trailer) and the agent goes there; with no name, each address is tried in turn.
   */
  addresses?: string[];
  /** This agent's id; must equal the name in its certificate's SPIFFE id. */
  agentId: string;
  /** mTLS credentials (see clientCredentials in the rpc module). */
  credentials: ChannelCredentials;
  /** What it can do. */
  capabilities?: string[];
  /** What it offers. */
  resources?: Array<MessageInitShape<typeof ResourceSchema>>;
  /** Labels for topic routing. */
  labels?: Record<string, string>;
  /** Directives taken at once (prefetch); 0 lets the coordinator choose. */
  maxInFlight?: number;
  /** Extra figures for status responses. */
  metrics?: () => Record<string, number>;
  /** Resource utilization 0..1 for status responses. */
  utilization?: () => number;
  /** Reconnect after a transient failure (default true), with exponential backoff and jitter. */
  reconnect?: boolean;
  /**
   * Let the first connect() wait for a coordinator that is not up yet, retrying with the
   * same backoff until it answers (default false: connect() rejects on the first failure).
   * A refusal (PERMISSION_DENIED, UNAUTHENTICATED, an untrusted coordinator certificate...)
   * still rejects at once; so does close() or the signal.
   */
  waitForCoordinator?: boolean;
  /** First reconnect delay, ms (default 100); doubled up to reconnectMaxMs (default 5000). */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  /**
   * How long an attempt waits for the coordinator's Welcome before it gives up and dials
   * again, ms (default 10000). Heartbeats watch a session only from its Welcome on: a
   * connection that stalls before it (a handshake whose bytes were lost) would wait forever.
   */
  welcomeTimeoutMs?: number;
  /** Directive ids remembered to drop duplicates (default 100000). */
  dedupMemory?: number;
  /** Closes the session when aborted. */
  signal?: AbortSignal;
  /** Refuse a coordinator that does not sign its messages (default false: follow the coordinator's Welcome). */
  requireMessageSecurity?: boolean;
  /** How far a signed batch's timestamp may be from this agent's clock, ms (default 5 min). */
  replayWindowMs?: number;
  /** This agent's wall clock, ms since the epoch (default Date.now): every timestamp it sends and its replay checks use it. */
  now?: () => number;
  /** Defaults to a pino logger at "warn". */
  logger?: Logger;
}

/** What a handler gets besides the directive. */
export interface DirectiveContext {
  /** Aborted when the directive is cancelled or the agent closes. */
  signal: AbortSignal;
  /** Reports progress (0..100), which also extends the directive's lease. */
  progress(completionPercentage: number, metrics?: Partial<Omit<ProgressMetrics, "$typeName">>): void;
  /** The task's sensitive input, opened from the directive's sealed parameters; undefined when it has none. */
  readonly sensitiveInput: JsonObject | undefined;
}

/** Runs one directive; the returned object is the task's result. Its id is an idempotency key. */
export type DirectiveHandler = (directive: CoordinationDirective, ctx: DirectiveContext) => Promise<JsonObject | void>;

/** A directive received, with the ways to answer it. */
export interface ReceivedDirective extends DirectiveContext {
  readonly directive: CoordinationDirective;
  /** Takes it (DirectiveAck ACCEPTED). */
  accept(): void;
  /** Refuses it for good; it is not retried to this agent. */
  reject(reason: string): void;
  /** Not now: the coordinator redelivers later. */
  defer(reason: string, retryAfterMs?: number): void;
  /** Reports success with a result (kept and resent until the coordinator acknowledges it). */
  complete(result?: JsonObject): void;
  /** Reports failure; `retryable: false` dead-letters the task at once. */
  fail(error: { code?: string; message: string; retryable?: boolean }): void;
}

export type { SessionEnd };

/** The next attempt at a session, after `end`. */
export interface Reconnecting {
  end: SessionEnd;
  /** 1 for the first attempt since the last Welcome (or since the start), then 2, 3... */
  attempt: number;
  /** How long the agent waits before it, ms. */
  delayMs: number;
  /** Whether this agent has had a session since it started (false while the first connect waits). */
  everConnected: boolean;
}

/** What an agent tells its user. */
export interface AgentEvents {
  welcome: [welcome: Welcome];
  drain: [drain: Drain];
  disconnected: [end: SessionEnd];
  reconnecting: [next: Reconnecting];
  closed: [end: SessionEnd];
}

interface Tracked {
  directive: CoordinationDirective;
  controller: AbortController;
  startedAt: number;
  answer: { outcome: AckOutcome; reason: string; retryAfterMs?: number } | undefined;
  done: boolean;
}

type Outgoing = { kind: "report"; report: AgentReport } | { kind: "frame"; frame: ConnectRequest };

/**
 * A managed agent's side of the session. It says Hello, answers status requests, sends
 * heartbeats, acknowledges and runs directives, keeps each completion until the
 * coordinator acknowledges it, and reconnects (resuming its session) after a failure.
 */
export class BatonAgent extends EventEmitter<AgentEvents> {
  private readonly logger: Logger;
  private channel: Channel;
  /** The coordinator dialled now: options.address, a leader a follower named, or the next of options.addresses. */
  private target: string;
  private leaderHint: string | undefined;
  private readonly inbox: AsyncQueue<ReceivedDirective> = createAsyncQueue({ capacity: 100_000, overflow: "error", name: "agent inbox" });
  /** Directive id -> what this agent did with it; duplicates (redelivery, replay) are answered from here. */
  private readonly seen = new Map<string, Tracked>();
  /** Completions not yet acknowledged by the coordinator, resent after every reconnect. */
  private readonly unacked = new Map<string, TaskCompletion>();
  private readonly closing = new AbortController();
  private stopping = false;
  private outbox: AsyncQueue<Outgoing> | undefined;
  private streamAbort: AbortController | undefined;
  private welcome: Welcome | undefined;
  /** When the last pushed status went out (performance.now), and the push waiting for the sync interval. */
  private statusPushedAt = Number.NEGATIVE_INFINITY;
  private statusTimer: NodeJS.Timeout | undefined;
  private sessionId = "";
  private lastSequence = 0n;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastHeard = Date.now();
  private ended: SessionEnd | undefined;
  private readonly endPromise: Promise<SessionEnd>;
  private resolveEnd!: (end: SessionEnd) => void;
  private firstWelcome: { resolve: (w: Welcome) => void; reject: (e: unknown) => void } | undefined;
  /** The session's message keys (from Welcome, then KeyRotation) and replay guard; undefined when unsigned. */
  private keyring: Keyring | undefined;
  private replay: ReplayGuard | undefined;
  private welcomeGate: (() => void) | undefined;
  private readonly clock: () => number;
  /** AgentOptions.welcomeTimeoutMs, checked. */
  private readonly welcomeTimeoutMs: number;
  /** The coordinator's clock at a monotonic instant (Welcome, then its heartbeats): our skew now, even after our clock jumps. */
  private serverClock: { serverMs: number; at: number } | undefined;

  constructor(private readonly options: AgentOptions) {
    super();
    this.welcomeTimeoutMs = options.welcomeTimeoutMs ?? 10_000;
    if (!(Number.isFinite(this.welcomeTimeoutMs) && this.welcomeTimeoutMs > 0)) throw new RangeError(`AgentOptions.welcomeTimeoutMs must be a positive number of ms, got ${options.welcomeTimeoutMs}`);
    this.clock = options.now ?? Date.now;
    this.logger = (options.logger ?? createLogger({ level: "warn" })).child({ component: "agent", agent_id: options.agentId });
    this.target = options.address;
    this.channel = this.dial();
    this.endPromise = new Promise((resolve) => (this.resolveEnd = resolve));
    options.signal?.addEventListener("abort", () => void this.close(), { once: true });
  }

  /** Resolves when the agent has stopped for good, with the final status. */
  get done(): Promise<SessionEnd> {
    return this.endPromise;
  }

  /** The Welcome of the current session. */
  get session(): Welcome | undefined {
    return this.welcome;
  }

  /** Completions the coordinator has not acknowledged yet. */
  get unacknowledgedCompletions(): number {
    return this.unacked.size;
  }

  /**
   * Opens the session and resolves with the first Welcome; a refusal rejects, and so does any
   * first failure unless `waitForCoordinator`. Later failures reconnect.
   */
  connect(): Promise<Welcome> {
    const welcomed = new Promise<Welcome>((resolve, reject) => (this.firstWelcome = { resolve, reject }));
    void this.loop();
    return welcomed;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let everConnected = false;
    const o = this.options;
    while (!this.stopping) {
      const end = await this.runSession();
      if (this.stopping) return this.finish({ code: Code.OK, message: "closed by the agent" });
      const welcomed = this.welcome !== undefined;
      everConnected ||= welcomed;
      this.welcome = undefined;
      this.emit("disconnected", end);
      const refusal = finalRefusal(end);
      const leader = this.followLeader(welcomed);
      // A first connect that never got a Welcome tells its caller, unless told to wait for the coordinator (or a follower named the leader).
      const giveUp = refusal ?? (o.reconnect === false || (this.firstWelcome && !o.waitForCoordinator && !leader) ? end : undefined);
      if (giveUp) {
        this.firstWelcome?.reject(new BatonError(giveUp.code, giveUp.message));
        this.firstWelcome = undefined;
        return this.finish(giveUp);
      }
      failures = welcomed || leader ? 1 : failures + 1;
      const wait = backoffMs(failures, o.reconnectInitialMs ?? 100, o.reconnectMaxMs ?? 5000);
      this.logger.info({ code: Code[end.code], reason: end.message, retry_in_ms: wait }, "session lost; reconnecting");
      this.emit("reconnecting", { end, attempt: failures, delayMs: wait, everConnected });
      // Kept alive: in an agent process that does nothing else, this wait is all there is
      // between the coordinator going away and its return (an unref()ed timer would let the process exit).
      await delay(wait, this.closing.signal, { keepAlive: true }).catch(() => {});
      // A fresh channel, without the old one's own backoff (grpc-js waits up to 2 min between tries).
      if (!this.stopping) this.redial();
    }
    this.finish({ code: Code.OK, message: "closed by the agent" });
  }

  private async runSession(): Promise<SessionEnd> {
    const outbox = createAsyncQueue<Outgoing>({ capacity: 100_000, overflow: "error", name: "agent outbox" });
    this.outbox = outbox;
    const streamAbort = new AbortController();
    this.streamAbort = streamAbort;
    const o = this.options;
    this.keyring = undefined;
    this.replay = undefined;
    const gate = new Promise<void>((resolve) => (this.welcomeGate = resolve));
    const hello = create(ConnectRequestSchema, {
        kind: {
          case: "hello",
          value: {
            agentId: o.agentId,
            capabilities: o.capabilities ?? [],
            resources: o.resources ?? [],
            labels: o.labels ?? {},
            maxInFlight: o.maxInFlight ?? 0,
            protocolVersion: PROTOCOL_VERSION,
            userAgent: "baton-ts-sdk/0.1.0",
            sentAt: this.timestamp(),
            sessionId: this.sessionId,
            lastSequence: this.lastSequence,
          },
        },
    });
    const client = createClient(Coordinator, this.channel);
    const responses = client.connect(this.frames(hello, gate, outbox), { signal: AbortSignal.any([streamAbort.signal, this.closing.signal]) });
    const welcomeMs = this.welcomeTimeoutMs;
    const noWelcome = setTimeout(() => {
      if (this.welcome) return;
      this.logger.warn({ welcome_timeout_ms: welcomeMs }, "no Welcome from the coordinator; dialling again");
      streamAbort.abort(unavailable(`no Welcome from the coordinator within ${welcomeMs} ms`));
    }, welcomeMs);
    try {
      for await (const frame of responses) {
        this.lastHeard = Date.now();
        this.handle(frame);
      }
      return { code: Code.UNAVAILABLE, message: "the coordinator closed the session" };
    } catch (err) {
      // grpc-js reports our own abort as "Cancelled on client"; the session ends for the reason we gave.
      const error = toBatonError(streamAbort.signal.aborted ? streamAbort.signal.reason : err);
      this.leaderHint = error.trailers[LEADER_TRAILER] || undefined;
      return { code: error.code, message: error.message };
    } finally {
      clearTimeout(noWelcome);
      clearInterval(this.heartbeat);
      this.welcomeGate?.();
      outbox.close();
      if (this.outbox === outbox) this.outbox = undefined;
    }
  }

  private async *frames(hello: ConnectRequest, welcomed: Promise<void>, outbox: AsyncQueue<Outgoing>): AsyncGenerator<ConnectRequest> {
    yield hello;
    // Reports wait for Welcome: it says whether (and with which key) they must be signed.
    await welcomed;
    for (;;) {
      if (outbox.size === 0) {
        if (outbox.closed) return;
        await outbox.wait();
        continue;
      }
      // Reports queued while the stream was busy travel together in one AgentReports.
      let reports: AgentReport[] = [];
      const flush = (): ConnectRequest | undefined => {
        if (reports.length === 0) return undefined;
        const batch = reports;
        reports = [];
        const value = create(AgentReportsSchema, { messageId: randomUUID(), sentAt: this.timestamp(), sender: this.options.agentId, reports: batch });
        if (!this.keyring) return create(ConnectRequestSchema, { kind: { case: "reports", value } });
        return create(ConnectRequestSchema, { kind: { case: "signedReports", value: signEnvelope(this.keyring, encodeBinary(AgentReportsSchema, value)) } });
      };
      for (const item of outbox.drain()) {
        if (item.kind === "frame") {
          const pending = flush();
          if (pending) yield pending;
          yield item.frame;
        } else {
          reports.push(item.report);
        }
      }
      const rest = flush();
      if (rest) yield rest;
    }
  }

  private handle(frame: ConnectResponse): void {
    const kind = frame.kind;
    switch (kind.case) {
      case "welcome":
        this.onWelcome(kind.value);
        return;
      case "heartbeat":
        if (kind.value.sentAt) this.serverClock = { serverMs: timestampMs(kind.value.sentAt), at: performance.now() };
        // Ours answers the coordinator's, and our own timer starts its interval again: a
        // coordinator that ticks its sessions together then reads their heartbeats together,
        // rather than waking once for each agent's. The timer sends only when the
        // coordinator's heartbeats stop coming.
        if (this.heartbeat) {
          this.sendHeartbeat();
          this.heartbeat.refresh();
        }
        return;
      case "drain":
        if (kind.value.withdrawn) this.logger.info("coordinator withdraws its drain: this agent is in service again");
        else this.logger.info({ reason: kind.value.reason, reconnect_to: kind.value.reconnectTo }, "coordinator asks this agent to drain");
        // One event for both: a handler reads `withdrawn` to know which.
        this.emit("drain", kind.value);
        return;
      case "messages":
        if (this.keyring) throw new BatonError(Code.UNAUTHENTICATED, "the coordinator sent unsigned messages on a signed session");
        this.dispatch(kind.value.messages);
        return;
      case "signedMessages": {
        if (!this.keyring || !this.replay || !this.welcome) throw new BatonError(Code.FAILED_PRECONDITION, "signed messages arrived but Welcome carried no keys");
        const batch = this.openMessages(kind.value, this.keyring, this.replay, this.welcome.coordinatorId);
        this.dispatch(batch.messages);
        return;
      }
      default:
        return;
    }
  }

  private dispatch(messages: CoordinatorMessage[]): void {
    for (const message of messages) {
      const m = message.kind;
      if (m.case === "statusRequest") this.answerStatus(m.value);
      else if (m.case === "directive") this.receive(m.value);
      else if (m.case === "cancel") this.seen.get(m.value.directiveId)?.controller.abort(new BatonError(Code.CANCELLED, m.value.reason || "directive cancelled"));
      else if (m.case === "completionAck") this.unacked.delete(m.value.directiveId);
      else if (m.case === "keyRotation") {
        if (!this.keyring) throw new BatonError(Code.FAILED_PRECONDITION, "a key rotation arrived on an unsigned session");
        this.keyring.apply(m.value);
        this.logger.info({ keys: this.keyring.toJSON() }, "message keys rotated");
      }
    }
  }

  private onWelcome(welcome: Welcome): void {
    const refusal = this.checkClockSkew(welcome);
    if (refusal) {
      this.logger.warn({ skew_ms: refusal.skewMs, replay_window_ms: refusal.windowMs }, refusal.message);
      this.firstWelcome?.reject(refusal);
      this.firstWelcome = undefined;
      throw refusal;
    }
    if (welcome.keys) {
      this.keyring = keyringFromRotation(welcome.keys);
      this.replay = createReplayGuard({ now: this.clock, ...(this.options.replayWindowMs ? { windowMs: this.options.replayWindowMs } : {}) });
    } else if (this.options.requireMessageSecurity) {
      throw new BatonError(Code.FAILED_PRECONDITION, "the coordinator does not sign its messages, and this agent requires message security");
    }
    if (!welcome.resumed && this.sessionId) {
      // The coordinator did not keep our old session: it has replanned what we were running.
      for (const tracked of this.seen.values()) {
        if (!tracked.done) tracked.controller.abort(new BatonError(Code.UNAVAILABLE, "the session was lost; the coordinator replanned this directive"));
      }
    }
    if (!welcome.resumed) this.lastSequence = 0n;
    this.sessionId = welcome.sessionId;
    this.welcome = welcome;
    // Completions are reliable: every one not yet acknowledged goes again.
    for (const completion of this.unacked.values()) this.report({ case: "taskCompletion", value: completion });
    // 0 (a coordinator too old to send it) means the protocol's default of 3.
    this.startHeartbeats(welcome.heartbeatInterval ? durationMs(welcome.heartbeatInterval) : 5000, welcome.heartbeatMisses || 3);
    // A new session is a change: the coordinator's view of this agent starts from this push.
    this.statusChanged();
    this.emit("welcome", welcome);
    this.welcomeGate?.();
    this.firstWelcome?.resolve(welcome);
    this.firstWelcome = undefined;
  }

  /**
   * Measures this agent's clock against Welcome.server_time. Signed batches pass only inside
   * the replay window (the narrower of the coordinator's and ours), so beyond it the session
   * could only fail later, with work in hand: it is refused now, for good. A Welcome with a
   * window but no keys is the coordinator refusing our clock by its own measure.
   */
  private checkClockSkew(welcome: Welcome): ClockSkewError | undefined {
    if (!welcome.serverTime) return undefined;
    this.serverClock = { serverMs: timestampMs(welcome.serverTime), at: performance.now() };
    const skewMs = Math.round(this.clock() - this.serverClock.serverMs);
    const windows = [welcome.replayWindow ? durationMs(welcome.replayWindow) : 0, welcome.keys ? this.options.replayWindowMs || DEFAULT_REPLAY_WINDOW_MS : 0].filter((ms) => ms > 0);
    // Unsigned: no timestamp is checked, so no skew is refused.
    if (windows.length === 0) return undefined;
    const windowMs = Math.min(...windows);
    if (Math.abs(skewMs) > windowMs || !welcome.keys) {
      return new ClockSkewError(
        skewMs,
        windowMs,
        `clock skew: this agent's local clock is off by ${Math.abs(skewMs)} ms (${describeSkew(skewMs)} the coordinator's), beyond the ${windowMs} ms replay window, so signed messages cannot pass between them; correct this host's clock (NTP)`,
      );
    }
    // A quarter of the window: far from normal for synchronized clocks, and a drift away from refusal.
    if (Math.abs(skewMs) > windowMs / 4) {
      this.logger.warn({ skew_ms: skewMs, replay_window_ms: windowMs }, `this agent's clock is off by ${Math.abs(skewMs)} ms (${describeSkew(skewMs)} the coordinator's); past the ${windowMs} ms replay window its messages are refused: correct its clock (NTP)`);
    }
    return undefined;
  }

  /**
   * Opens a signed batch from the coordinator. A timestamp outside the window that agrees
   * with the coordinator's clock as measured (Welcome, heartbeats) is our clocks disagreeing,
   * and is reported as clock skew, not as a stale coordinator.
   */
  private openMessages(envelope: SignedEnvelope, keyring: Keyring, replay: ReplayGuard, coordinatorId: string): CoordinatorMessages {
    try {
      return openSignedBatch(keyring, replay, envelope, (bytes) => decodeRequest(CoordinatorMessagesSchema, bytes), coordinatorId);
    } catch (err) {
      if (!(err instanceof TimestampWindowError) || !this.serverClock) throw err;
      const skewMs = Math.round(this.clock() - (this.serverClock.serverMs + performance.now() - this.serverClock.at));
      // The batch's own measure of our skew is -offsetMs; within half a window of the clocks' measure, the batch was fresh.
      if (Math.abs(-err.offsetMs - skewMs) > err.windowMs / 2) throw err;
      throw new ClockSkewError(
        skewMs,
        err.windowMs,
        `clock skew: this agent's clock is ${describeSkew(skewMs)} the coordinator's (by its Welcome and heartbeats), beyond the ${err.windowMs} ms replay window, so the coordinator's signed batches are refused here (${err.message}); correct this host's clock (NTP)`,
      );
    }
  }

  private timestamp(): Timestamp {
    return timestampFromMs(this.clock());
  }

  private dial(): Channel {
    // A pool of its own: an agent's connection is never shared (its certificate is its
    // identity), and in grpc-js's global pool every new channel compares its options with
    // every channel's to the same address, O(n^2) for a process that hosts many agents.
    return createChannel(this.target, this.options.credentials, { ...clientChannelOptions(), "grpc.use_local_subchannel_pool": 1 });
  }

  /** After a session ends: goes to the leader a follower named, else (no Welcome) to the next address of a replica set; whether a leader was named. */
  private followLeader(welcomed: boolean): boolean {
    const hint = this.leaderHint;
    this.leaderHint = undefined;
    if (hint && hint !== this.target) {
      this.logger.info({ from: this.target, leader: hint }, "the coordinator is a follower; going to the leader it names");
      this.target = hint;
      return true;
    }
    const all = [this.options.address, ...(this.options.addresses ?? [])];
    if (!welcomed && all.length > 1) this.target = all[(all.indexOf(this.target) + 1) % all.length]!;
    return false;
  }

  private redial(): void {
    this.channel.close();
    this.channel = this.dial();
  }

  private startHeartbeats(intervalMs: number, misses: number): void {
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      // A coordinator silent for as many intervals as it allows agents (Welcome.heartbeat_misses) is gone, whatever TCP thinks.
      const silentMs = Date.now() - this.lastHeard;
      if (silentMs > intervalMs * misses) {
        this.logger.warn({ silent_ms: silentMs, heartbeat_interval_ms: intervalMs, heartbeat_misses: misses }, "no heartbeat from the coordinator; reconnecting");
        this.streamAbort?.abort(unavailable(`the coordinator sent nothing for ${silentMs} ms (${misses} heartbeat intervals of ${intervalMs} ms)`));
        // Nor is the connection trusted: a new call on a half-dead one waits for keepalive (40 s).
        this.redial();
        return;
      }
      this.sendHeartbeat();
    }, intervalMs);
    this.heartbeat.unref();
  }

  private sendHeartbeat(): void {
    this.outbox?.push({ kind: "frame", frame: { $typeName: "baton.v1.ConnectRequest", kind: { case: "heartbeat", value: { $typeName: "baton.v1.Heartbeat", sentAt: this.timestamp(), lastSequence: this.lastSequence } } } });
  }

  private report(report: AgentReport["kind"]): void {
    // With no stream the report is dropped: acks are answered again on replay, and completions are kept in `unacked`.
    this.outbox?.push({ kind: "report", report: { $typeName: "baton.v1.AgentReport", kind: report } });
  }

  /**
   * Pushes this agent's status when its work changed (the synced view the coordinator plans
   * from), at once unless one went out less than a sync interval ago; then once the interval
   * is up. A coordinator whose Welcome names no sync interval asks instead.
   */
  private statusChanged(): void {
    const interval = this.welcome?.syncInterval;
    if (!interval || this.statusTimer) return;
    const intervalMs = durationMs(interval);
    const wait = this.statusPushedAt + intervalMs - performance.now();
    const push = () => {
      this.statusTimer = undefined;
      this.statusPushedAt = performance.now();
      this.answerStatus({ requestId: randomUUID() });
    };
    // After the reports of this tick, so the status rides in their batch.
    if (wait <= 0) queueMicrotask(push);
    else {
      this.statusTimer = setTimeout(push, wait);
      this.statusTimer.unref();
    }
  }

  private answerStatus(request: Pick<AgentStatusRequest, "requestId">): void {
    const active = [...this.seen.values()].filter((t) => !t.done && t.answer?.outcome === AckOutcome.ACCEPTED);
    this.report({
      case: "statusResponse",
      value: {
        $typeName: "baton.v1.AgentStatusResponse",
        requestId: request.requestId,
        timestamp: this.timestamp(),
        sourceAgent: this.options.agentId,
        state: AgentState.ONLINE,
        inFlight: active.length,
        activeDirectives: active.map((t) => t.directive.directiveId),
        resourceUtilization: this.options.utilization?.() ?? 0,
        metrics: this.options.metrics?.() ?? {},
      },
    });
  }

  private sendAck(tracked: Tracked): void {
    const answer = tracked.answer!;
    const d = tracked.directive;
    this.report({
      case: "directiveAck",
      value: {
        $typeName: "baton.v1.DirectiveAck",
        directiveId: d.directiveId,
        timestamp: this.timestamp(),
        sourceAgent: this.options.agentId,
        attempt: d.attempt,
        sequence: d.sequence,
        outcome: answer.outcome,
        reason: answer.reason,
        ...(answer.retryAfterMs !== undefined ? { retryAfter: durationFromMs(Math.round(answer.retryAfterMs)) } : {}),
      },
    });
  }

  private remember(id: string, tracked: Tracked): void {
    this.seen.set(id, tracked);
    const limit = this.options.dedupMemory ?? 100_000;
    // Forget the oldest finished directives first; running ones are never forgotten.
    if (this.seen.size > limit) {
      for (const [key, t] of this.seen) {
        if (this.seen.size <= limit) break;
        if (t.done) this.seen.delete(key);
      }
    }
  }

  private receive(directive: CoordinationDirective): void {
    if (directive.sequence > this.lastSequence) this.lastSequence = directive.sequence;
    const known = this.seen.get(directive.directiveId);
    if (known) {
      // A redelivery or replay: the directive takes effect once; answer for the new attempt.
      known.directive.attempt = directive.attempt;
      known.directive.sequence = directive.sequence;
      if (known.answer) this.sendAck(known);
      this.logger.debug({ directive_id: directive.directiveId, attempt: directive.attempt }, "duplicate directive dropped");
      return;
    }
    let sensitiveInput: JsonObject | undefined;
    let unsealError: string | undefined;
    const sealed = directive.parameters?.sealed;
    if (sealed) {
      try {
        if (!this.keyring || !this.welcome) throw new Error("no session keys to open it with");
        const plaintext = open(this.keyring, sealed, { messageId: directive.directiveId, sender: this.welcome.coordinatorId, messageType: SEALED_DIRECTIVE_TYPE });
        sensitiveInput = toJson(StructSchema, fromBinary(StructSchema, plaintext)) as JsonObject;
      } catch (err) {
        unsealError = `its sealed parameters do not open: ${(err as Error).message}`;
      }
    }
    const tracked: Tracked = { directive, controller: new AbortController(), startedAt: performance.now(), answer: undefined, done: false };
    this.remember(directive.directiveId, tracked);
    const signal = AbortSignal.any([tracked.controller.signal, this.closing.signal]);
    const answer = (outcome: AckOutcome, reason = "", retryAfterMs?: number) => {
      if (tracked.answer) return;
      tracked.answer = { outcome, reason, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
      if (outcome !== AckOutcome.ACCEPTED) {
        tracked.done = true;
        // A deferred directive may come back as itself: let it through then.
        if (outcome === AckOutcome.NOT_NOW) this.seen.delete(directive.directiveId);
      }
      this.sendAck(tracked);
      if (outcome === AckOutcome.ACCEPTED) this.statusChanged();
    };
    const finish = (status: CompletionStatus, result?: JsonObject, error?: { code?: string; message: string; retryable?: boolean }) => {
      if (tracked.done) return;
      tracked.done = true;
      const completion: TaskCompletion = {
        $typeName: "baton.v1.TaskCompletion",
        eventId: randomUUID(),
        timestamp: this.timestamp(),
        sourceAgent: this.options.agentId,
        directiveId: directive.directiveId,
        taskId: taskIdOf(directive),
        status,
        ...(result ? { result } : {}),
        ...(error ? { error: { $typeName: "baton.v1.TaskError", code: error.code ?? "directive_failed", message: error.message, retryable: error.retryable ?? true } } : {}),
        // Whole milliseconds: Duration.nanos must be an integer.
        duration: durationFromMs(Math.round(performance.now() - tracked.startedAt)),
      };
      this.unacked.set(directive.directiveId, completion);
      this.report({ case: "taskCompletion", value: completion });
      this.statusChanged();
    };
    const agentId = this.options.agentId;
    const received: ReceivedDirective = {
      directive,
      signal,
      sensitiveInput,
      accept: () => answer(AckOutcome.ACCEPTED),
      reject: (reason) => answer(AckOutcome.REJECTED, reason),
      defer: (reason, retryAfterMs) => answer(AckOutcome.NOT_NOW, reason, retryAfterMs),
      progress: (completionPercentage, metrics = {}) =>
        this.report({
          case: "progressUpdate",
          value: {
            $typeName: "baton.v1.ProgressUpdate",
            eventId: randomUUID(),
            timestamp: this.timestamp(),
            sourceAgent: agentId,
            status: ProgressStatus.IN_PROGRESS,
            metrics: { $typeName: "baton.v1.ProgressMetrics", completionPercentage, resourceUtilization: metrics.resourceUtilization ?? 0, custom: metrics.custom ?? {} },
            directiveId: directive.directiveId,
            taskId: taskIdOf(directive),
          },
        }),
      complete: (result) => finish(signal.aborted && tracked.controller.signal.aborted ? CompletionStatus.CANCELLED : CompletionStatus.SUCCEEDED, result),
      fail: (error) => finish(tracked.controller.signal.aborted ? CompletionStatus.CANCELLED : CompletionStatus.FAILED, undefined, error),
    };
    // A directive whose secrets cannot be read is refused here, not handed to the application.
    if (unsealError) {
      this.logger.warn({ directive_id: directive.directiveId, reason: unsealError }, "directive refused");
      received.reject(unsealError);
      return;
    }
    this.inbox.push(received);
  }

  /** Directives as they arrive (duplicates dropped); answer each with accept/reject/defer, then complete or fail. */
  directives(): AsyncIterable<ReceivedDirective> {
    return this.inbox;
  }

  /**
   * Handler mode: each directive is acknowledged on receipt, run, and completed when the
   * handler returns (failed when it throws). Resolves when the agent stops.
   */
  async run(handler: DirectiveHandler): Promise<SessionEnd> {
    const running = new Set<Promise<void>>();
    for await (const received of this.inbox) {
      received.accept();
      const job = (async () => {
        try {
          const result = await handler(received.directive, received);
          received.complete(result ?? undefined);
        } catch (err) {
          received.fail({ message: err instanceof Error ? err.message : String(err) });
        }
      })();
      running.add(job);
      void job.finally(() => running.delete(job));
    }
    await Promise.allSettled(running);
    return this.endPromise;
  }

  private finish(end: SessionEnd): void {
    if (this.ended) return;
    this.ended = end;
    clearInterval(this.heartbeat);
    clearTimeout(this.statusTimer);
    for (const tracked of this.seen.values()) if (!tracked.done) tracked.controller.abort(new BatonError(Code.UNAVAILABLE, "the agent stopped"));
    this.inbox.close();
    this.channel.close();
    // Closed while the first connect still waited: its caller hears why.
    this.firstWelcome?.reject(new BatonError(end.code === Code.OK ? Code.CANCELLED : end.code, end.code === Code.OK ? "the agent closed before the coordinator welcomed it" : end.message));
    this.firstWelcome = undefined;
    this.logger.info({ code: Code[end.code], reason: end.message }, "agent stopped");
    this.resolveEnd(end);
    this.emit("closed", end);
  }

  /**
   * Stops: waits briefly for unacknowledged completions to be acknowledged, then
   * half-closes the stream so the coordinator sees a clean end.
   */
  async close(options: { flushMs?: number } = {}): Promise<SessionEnd> {
    if (this.ended) return this.endPromise;
    const deadline = Date.now() + (options.flushMs ?? 1000);
    while (this.unacked.size > 0 && this.welcome && Date.now() < deadline) await delay(10, undefined, { keepAlive: true });
    this.stopping = true;
    // Half-close: the coordinator sees the stream end cleanly; cancel only if it does not answer.
    this.outbox?.close();
    const timer = setTimeout(() => this.closing.abort(new BatonError(Code.CANCELLED, "agent closed")), 2000);
    timer.unref();
    if (!this.outbox) this.closing.abort(new BatonError(Code.CANCELLED, "agent closed"));
    const end = await this.endPromise;
    clearTimeout(timer);
    return end;
  }
}

function taskIdOf(directive: CoordinationDirective): string {
  const kind = directive.parameters?.kind;
  return kind?.case === "assignTask" || kind?.case === "formCoalition" ? kind.value.taskId : "";
}

/** Creates an agent; call connect() to open its session. */
export function createAgent(options: AgentOptions): BatonAgent {
  return new BatonAgent(options);
}
