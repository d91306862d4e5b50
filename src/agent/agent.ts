import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { create, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampNow } from "@bufbuild/protobuf/wkt";
import type { ChannelCredentials } from "@grpc/grpc-js";
import { AgentState, ProgressStatus, type Resource } from "../../gen/baton/v1/common_pb.js";
import {
  AckOutcome,
  CompletionStatus,
  type AgentStatusRequest,
  type CoordinationDirective,
  type ProgressMetrics,
} from "../../gen/baton/v1/coordination_pb.js";
import {
  Coordinator,
  ConnectRequestSchema,
  type AgentReport,
  type ConnectRequest,
  type ConnectResponse,
  type Drain,
  type Welcome,
} from "../../gen/baton/v1/session_pb.js";
import { BatonError, Code, toBatonError, unavailable } from "../errors.js";
import { createLogger, type Logger } from "../logging.js";
import { PROTOCOL_VERSION } from "../protocol/index.js";
import { clientChannelOptions, createChannel, createClient, type Channel } from "../rpc/index.js";
import { createAsyncQueue, type AsyncQueue } from "../streams/index.js";

/** How an agent connects and what it offers. */
export interface AgentOptions {
  /** The coordinator, "localhost:50051" (dial localhost, not 127.0.0.1, so TLS names match). */
  address: string;
  /** This agent's id; must equal the name in its certificate's SPIFFE id. */
  agentId: string;
  /** mTLS credentials (see clientCredentials in the rpc module). */
  credentials: ChannelCredentials;
  /** What it can do. */
  capabilities?: string[];
  /** What it offers. */
  resources?: Array<MessageInitShape<typeof import("../../gen/baton/v1/common_pb.js").ResourceSchema>>;
  /** Labels for topic routing. */
  labels?: Record<string, string>;
  /** Directives taken at once (prefetch); 0 lets the coordinator choose. */
  maxInFlight?: number;
  /** Extra figures for status responses. */
  metrics?: () => Record<string, number>;
  /** Resource utilization 0..1 for status responses. */
  utilization?: () => number;
  /** Closes the session when aborted. */
  signal?: AbortSignal;
  /** Defaults to a pino logger at "warn". */
  logger?: Logger;
}

/** What a handler gets besides the directive. */
export interface DirectiveContext {
  /** Aborted when the directive is cancelled or the session ends. */
  signal: AbortSignal;
  /** Reports progress (0..100) and figures. */
  progress(completionPercentage: number, metrics?: Partial<Omit<ProgressMetrics, "$typeName">>): void;
}

/** Runs one directive; the returned object is the task's result. */
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
  /** Reports success with a result. */
  complete(result?: JsonObject): void;
  /** Reports failure. */
  fail(error: { code?: string; message: string; retryable?: boolean }): void;
}

/** Why a session ended. */
export interface SessionEnd {
  code: Code;
  message: string;
}

/** What an agent tells its user. */
export interface AgentEvents {
  welcome: [welcome: Welcome];
  drain: [drain: Drain];
  closed: [end: SessionEnd];
}

interface Tracked {
  directive: CoordinationDirective;
  controller: AbortController;
  startedAt: number;
}

type Outgoing = { kind: "report"; report: AgentReport } | { kind: "frame"; frame: ConnectRequest };

/**
 * A managed agent's side of the session: says Hello, answers status requests, sends
 * heartbeats, and hands directives to its user as an async iterable or a handler.
 */
export class BatonAgent extends EventEmitter<AgentEvents> {
  private readonly logger: Logger;
  private readonly channel: Channel;
  private readonly outbox: AsyncQueue<Outgoing> = createAsyncQueue({ capacity: 100_000, overflow: "error", name: "agent outbox" });
  private readonly inbox: AsyncQueue<ReceivedDirective> = createAsyncQueue({ capacity: 100_000, overflow: "error", name: "agent inbox" });
  private readonly active = new Map<string, Tracked>();
  private readonly abort = new AbortController();
  private welcome: Welcome | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastHeard = Date.now();
  private ended: SessionEnd | undefined;
  private readonly endPromise: Promise<SessionEnd>;
  private resolveEnd!: (end: SessionEnd) => void;

  constructor(private readonly options: AgentOptions) {
    super();
    this.logger = (options.logger ?? createLogger({ level: "warn" })).child({ component: "agent", agent_id: options.agentId });
    this.channel = createChannel(options.address, options.credentials, clientChannelOptions());
    this.endPromise = new Promise((resolve) => (this.resolveEnd = resolve));
    options.signal?.addEventListener("abort", () => void this.close(), { once: true });
  }

  /** Resolves when the session ends, with its status. */
  get done(): Promise<SessionEnd> {
    return this.endPromise;
  }

  /** The Welcome of the open session. */
  get session(): Welcome | undefined {
    return this.welcome;
  }

  /** Opens the stream, says Hello and resolves with the Welcome (rejects with the refusal). */
  async connect(): Promise<Welcome> {
    const o = this.options;
    this.outbox.push({
      kind: "frame",
      frame: create(ConnectRequestSchema, {
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
          },
        },
      }),
    });
    const client = createClient(Coordinator, this.channel);
    const responses = client.connect(this.frames(), { signal: this.abort.signal });
    const welcomed = new Promise<Welcome>((resolve, reject) => {
      this.once("welcome", resolve);
      void this.endPromise.then((end) => reject(new BatonError(end.code, end.message)));
    });
    void this.read(responses);
    return welcomed;
  }

  private async *frames(): AsyncGenerator<ConnectRequest> {
    for (;;) {
      if (this.outbox.size === 0) {
        if (this.outbox.closed) return;
        await this.outbox.wait();
        continue;
      }
      // Reports queued while the stream was busy travel together in one AgentReports.
      let reports: AgentReport[] = [];
      const flush = (): ConnectRequest | undefined => {
        if (reports.length === 0) return undefined;
        const batch = reports;
        reports = [];
        return create(ConnectRequestSchema, {
          kind: { case: "reports", value: { messageId: randomUUID(), sentAt: timestampNow(), sender: this.options.agentId, reports: batch } },
        });
      };
      for (const item of this.outbox.drain()) {
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

  private async read(responses: AsyncIterable<ConnectResponse>): Promise<void> {
    try {
      for await (const frame of responses) {
        this.lastHeard = Date.now();
        this.handle(frame);
      }
      this.finish({ code: Code.OK, message: "the coordinator closed the session" });
    } catch (err) {
      const error = toBatonError(err);
      this.finish({ code: error.code, message: error.message });
    }
  }

  private handle(frame: ConnectResponse): void {
    const kind = frame.kind;
    switch (kind.case) {
      case "welcome":
        this.welcome = kind.value;
        this.startHeartbeats(kind.value.heartbeatInterval ? durationMs(kind.value.heartbeatInterval) : 5000);
        this.emit("welcome", kind.value);
        return;
      case "heartbeat":
        return;
      case "drain":
        this.logger.info({ reason: kind.value.reason, reconnect_to: kind.value.reconnectTo }, "coordinator asks this agent to drain");
        this.emit("drain", kind.value);
        return;
      case "messages":
        for (const message of kind.value.messages) {
          const m = message.kind;
          if (m.case === "statusRequest") this.answerStatus(m.value);
          else if (m.case === "directive") this.receive(m.value);
          else if (m.case === "cancel") this.active.get(m.value.directiveId)?.controller.abort(new BatonError(Code.CANCELLED, m.value.reason || "directive cancelled"));
        }
        return;
      case "signedMessages":
        this.logger.warn("signed messages are not supported by this SDK build; ignored");
        return;
      default:
        return;
    }
  }

  private startHeartbeats(intervalMs: number): void {
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      // A coordinator silent for three intervals is gone, whatever TCP thinks.
      if (Date.now() - this.lastHeard > intervalMs * 3) {
        this.logger.warn("no heartbeat from the coordinator; closing the session");
        this.abort.abort(unavailable("the coordinator stopped sending heartbeats"));
        return;
      }
      this.outbox.push({ kind: "frame", frame: create(ConnectRequestSchema, { kind: { case: "heartbeat", value: { sentAt: timestampNow() } } }) });
    }, intervalMs);
    this.heartbeat.unref();
  }

  private report(report: AgentReport["kind"]): void {
    this.outbox.push({ kind: "report", report: { $typeName: "baton.v1.AgentReport", kind: report } });
  }

  private answerStatus(request: AgentStatusRequest): void {
    this.report({
      case: "statusResponse",
      value: {
        $typeName: "baton.v1.AgentStatusResponse",
        requestId: request.requestId,
        timestamp: timestampNow(),
        sourceAgent: this.options.agentId,
        state: AgentState.ONLINE,
        inFlight: this.active.size,
        activeDirectives: [...this.active.keys()],
        resourceUtilization: this.options.utilization?.() ?? 0,
        metrics: this.options.metrics?.() ?? {},
      },
    });
  }

  private receive(directive: CoordinationDirective): void {
    const controller = new AbortController();
    const signal = AbortSignal.any([controller.signal, this.abort.signal]);
    const tracked: Tracked = { directive, controller, startedAt: performance.now() };
    this.active.set(directive.directiveId, tracked);
    const agentId = this.options.agentId;
    const ack = (outcome: AckOutcome, reason = "", retryAfterMs?: number) =>
      this.report({
        case: "directiveAck",
        value: {
          $typeName: "baton.v1.DirectiveAck",
          directiveId: directive.directiveId,
          timestamp: timestampNow(),
          sourceAgent: agentId,
          attempt: directive.attempt,
          sequence: directive.sequence,
          outcome,
          reason,
          ...(retryAfterMs !== undefined ? { retryAfter: durationFromMs(Math.round(retryAfterMs)) } : {}),
        },
      });
    const finish = (status: CompletionStatus, result?: JsonObject, error?: { code?: string; message: string; retryable?: boolean }) => {
      if (!this.active.delete(directive.directiveId)) return;
      this.report({
        case: "taskCompletion",
        value: {
          $typeName: "baton.v1.TaskCompletion",
          eventId: randomUUID(),
          timestamp: timestampNow(),
          sourceAgent: agentId,
          directiveId: directive.directiveId,
          taskId: taskIdOf(directive),
          status,
          ...(result ? { result } : {}),
          ...(error ? { error: { $typeName: "baton.v1.TaskError", code: error.code ?? "directive_failed", message: error.message, retryable: error.retryable ?? true } } : {}),
          // Whole milliseconds: Duration.nanos must be an integer.
          duration: durationFromMs(Math.round(performance.now() - tracked.startedAt)),
        },
      });
    };
    const received: ReceivedDirective = {
      directive,
      signal,
      accept: () => ack(AckOutcome.ACCEPTED),
      reject: (reason) => {
        this.active.delete(directive.directiveId);
        ack(AckOutcome.REJECTED, reason);
      },
      defer: (reason, retryAfterMs) => {
        this.active.delete(directive.directiveId);
        ack(AckOutcome.NOT_NOW, reason, retryAfterMs);
      },
      progress: (completionPercentage, metrics = {}) =>
        this.report({
          case: "progressUpdate",
          value: {
            $typeName: "baton.v1.ProgressUpdate",
            eventId: randomUUID(),
            timestamp: timestampNow(),
            sourceAgent: agentId,
            status: ProgressStatus.IN_PROGRESS,
            metrics: { $typeName: "baton.v1.ProgressMetrics", completionPercentage, resourceUtilization: metrics.resourceUtilization ?? 0, custom: metrics.custom ?? {} },
            directiveId: directive.directiveId,
            taskId: taskIdOf(directive),
          },
        }),
      complete: (result) => finish(CompletionStatus.SUCCEEDED, result),
      fail: (error) => finish(CompletionStatus.FAILED, undefined, error),
    };
    this.inbox.push(received);
  }

  /** Directives as they arrive; answer each with accept/reject/defer, then complete or fail. */
  directives(): AsyncIterable<ReceivedDirective> {
    return this.inbox;
  }

  /**
   * Handler mode: each directive is acknowledged on receipt, run, and completed when the
   * handler returns (failed when it throws). Resolves when the session ends.
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
          if (received.signal.aborted) {
            this.logger.debug({ directive_id: received.directive.directiveId }, "handler stopped: directive cancelled");
          }
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
    for (const tracked of this.active.values()) tracked.controller.abort(new BatonError(Code.UNAVAILABLE, "the session ended"));
    this.outbox.close();
    this.inbox.close();
    this.channel.close();
    this.logger.info({ code: Code[end.code], reason: end.message }, "session ended");
    this.resolveEnd(end);
    this.emit("closed", end);
  }

  /** Ends the session: half-closes the stream so the coordinator sees a clean end. */
  async close(): Promise<SessionEnd> {
    if (!this.ended) {
      this.outbox.close();
      const timer = setTimeout(() => this.abort.abort(new BatonError(Code.CANCELLED, "agent closed")), 2000);
      timer.unref();
      await this.endPromise;
      clearTimeout(timer);
    }
    return this.endPromise;
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

export type { Resource };
