import { randomUUID } from "node:crypto";
import { once } from "node:events";
import {
  Metadata,
  type handleBidiStreamingCall,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type ServiceError,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { type DescMessage, type DescMethod, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { BatonError, Code, invalidArgument, toBatonError } from "../errors.js";
import { logFailure, type Logger } from "../logging.js";
import { CORRELATION_HEADER, type HandlerContext, type PeerInfo } from "./context.js";
import { headersOf } from "./guard-interceptor.js";
import { redact } from "./redact.js";
import { assertValid } from "./validate.js";
import { encodeBuffer } from "./fast-binary.js";
import { decodeBinary } from "./fast-decode.js";

type In<M extends DescMethod> = MessageShape<M["input"]>;
type Out<M extends DescMethod> = MessageShape<M["output"]>;

/** A handler of one method, shaped by its kind (as in connect-es and nice-grpc). */
export type MethodImpl<M extends DescMethod> = M extends { methodKind: "unary" }
  ? (request: In<M>, ctx: HandlerContext) => Promise<Out<M>>
  : M extends { methodKind: "server_streaming" }
    ? (request: In<M>, ctx: HandlerContext) => AsyncIterable<Out<M>>
    : M extends { methodKind: "client_streaming" }
      ? (requests: AsyncIterable<In<M>>, ctx: HandlerContext) => Promise<Out<M>>
      : M extends { methodKind: "bidi_streaming" }
        ? (requests: AsyncIterable<In<M>>, ctx: HandlerContext) => AsyncIterable<Out<M>>
        : never;

/** Handlers for a generated service; a method left out answers UNIMPLEMENTED. */
export type ServiceImpl<S extends DescService> = {
  [K in keyof S["method"]]?: MethodImpl<S["method"][K]>;
};

/** What every call passes through before its handler runs. */
export interface AdapterOptions {
  /** The server's logger; each call gets a child with method and correlation_id. */
  logger: Logger;
  /** Resolves the caller's identity; throw a BatonError to refuse the call. */
  authenticate?: (peer: PeerInfo, headers: ReadonlyMap<string, string>, method: DescMethod) => unknown;
  /** Runs after authentication, before the handler; throw a BatonError to refuse. */
  authorize?: (method: DescMethod, ctx: HandlerContext) => void;
  /** Aborted when the server shuts down: every call's signal follows it. */
  shutdownSignal?: AbortSignal;
  /**
   * Told of every call once authorized, with a way to end it (a revoked certificate); returns
   * what to run when the call ends. A stream ended this way closes with the reason's status.
   */
  onCall?: (ctx: HandlerContext, abort: (reason: BatonError) => void) => () => void;
}

/** A grpc-js service definition plus its implementation, ready for `server.addService`. */
export interface AdaptedService {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

/** Decodes and checks one request message; malformed bytes or a missing field is INVALID_ARGUMENT. */
export function decodeRequest<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc> {
  let message: MessageShape<Desc>;
  try {
    message = decodeBinary(schema, bytes);
  } catch (err) {
    throw invalidArgument(`malformed ${schema.typeName}: ${err instanceof Error ? err.message : String(err)}`);
  }
  assertValid(schema, message);
  return message;
}

function passThrough(value: Buffer): Buffer {
  return value;
}


/**
 * The one bridge from a generated service descriptor to grpc-js. Requests stay raw
 * bytes inside grpc-js and are decoded here, so a malformed message becomes
 * INVALID_ARGUMENT (grpc-js would report its own deserializer's failure as INTERNAL).
 */
export function adaptService<S extends DescService>(service: S, impl: ServiceImpl<S>, options: AdapterOptions): AdaptedService {
  const definition: Record<string, ServiceDefinition[string]> = {};
  const implementation: UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const path = `/${service.typeName}/${method.name}`;
    const output = method.output;
    definition[method.name] = {
      path,
      originalName: method.localName,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: passThrough,
      requestDeserialize: passThrough,
      // Fields marked debug_redact (a task's sensitive_input) never leave the server in an answer.
      responseSerialize: (msg: MessageShape<typeof output>) => encodeBuffer(output, redact(output, msg)),
      responseDeserialize: (bytes: Buffer) => decodeBinary(output, bytes),
    };
    const handler = (impl as Record<string, unknown>)[method.localName];
    implementation[method.name] = handler
      ? wrap(method, path, handler, options)
      : wrapUnimplemented(method, path);
  }
  return { definition: definition as ServiceDefinition, implementation };
}

type AnyCall = ServerUnaryCall<Buffer, unknown> | ServerReadableStream<Buffer, unknown> | ServerWritableStream<Buffer, unknown> | ServerDuplexStream<Buffer, unknown>;

function toServiceError(err: BatonError): Partial<ServiceError> {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(err.trailers)) metadata.set(key, value);
  return { code: err.code, details: err.message, metadata };
}

// One listener per signal, fanning out to a set: every open call watches the server's
// shutdown signal, and an EventTarget scans its listeners on each add (a cost per call that
// grew with the calls open).
const abortWatchers = new WeakMap<AbortSignal, Set<() => void>>();
function onAbort(signal: AbortSignal, fn: () => void): () => void {
  if (signal.aborted) {
    fn();
    return () => {};
  }
  let set = abortWatchers.get(signal);
  if (!set) {
    const watchers = (set = new Set());
    abortWatchers.set(signal, watchers);
    signal.addEventListener("abort", () => [...watchers].forEach((w) => w()), { once: true });
  }
  set.add(fn);
  return () => set.delete(fn);
}

// The abort reason of every call that has finished: nothing is left to report it to, so one
// instance serves them all (an Error per call would capture a stack trace per call).
const CALL_ENDED = new BatonError(Code.CANCELLED, "the call ended");

/** Builds the context, authenticates and authorizes; throws a BatonError to refuse. */
function makeContext(method: DescMethod, path: string, call: AnyCall, options: AdapterOptions): { ctx: HandlerContext; done: () => void } {
  const headers = headersOf(call.metadata);
  const correlationId = headers.get(CORRELATION_HEADER) || randomUUID();
  const controller = new AbortController();
  const onShutdown = () => controller.abort(new BatonError(Code.UNAVAILABLE, "the server is shutting down"));
  const unwatchShutdown = options.shutdownSignal ? onAbort(options.shutdownSignal, onShutdown) : undefined;
  const onCancel = () => controller.abort(new BatonError(Code.CANCELLED, "the call was cancelled"));
  const events = call as unknown as import("node:events").EventEmitter;
  events.once("cancelled", onCancel);
  const auth = call.getAuthContext();
  const peer: PeerInfo = { address: call.getPeer(), certificate: auth.sslPeerCertificate };
  const deadline = call.getDeadline();
  const identity = options.authenticate?.(peer, headers, method);
  // Made on first use: pino serialises a child's bindings at once, and most calls never log.
  let logger: Logger | undefined;
  const ctx: HandlerContext = {
    method: path,
    signal: controller.signal,
    deadline: deadline instanceof Date ? deadline : Number.isFinite(deadline) ? new Date(deadline) : undefined,
    requestHeader: headers,
    peer,
    identity,
    correlationId,
    get logger() {
      return (logger ??= options.logger.child({ method: path, correlation_id: correlationId }));
    },
  };
  options.authorize?.(method, ctx);
  const untrack = options.onCall?.(ctx, (reason) => controller.abort(reason));
  const done = () => {
    untrack?.();
    unwatchShutdown?.();
    events.removeListener("cancelled", onCancel);
    if (!controller.signal.aborted) controller.abort(CALL_ENDED);
  };
  return { ctx, done };
}

// The logger is asked for only when there is something to log: a cancelled call makes no child.
function failure(err: unknown, logger: () => Logger): BatonError {
  const error = toBatonError(err);
  if (error.code === Code.INTERNAL) logFailure(logger(), err, "handler failed");
  else if (error.code !== Code.CANCELLED) logger().debug({ code: Code[error.code], reason: error.message }, "call refused");
  return error;
}

async function* decodeStream<Desc extends DescMessage>(schema: Desc, call: ServerReadableStream<Buffer, unknown> | ServerDuplexStream<Buffer, unknown>, signal: AbortSignal): AsyncGenerator<MessageShape<Desc>> {
  for await (const chunk of readMessages(call, signal)) yield decodeRequest(schema, chunk);
}

// Messages buffered before the call is paused (HTTP/2 flow control then holds the sender).
const READ_HIGH_WATER = 64;

/**
 * The call's incoming messages, with backpressure. Not Readable's own iterator: that one
 * destroys the call when it sees an error or when the loop leaves early, and a destroyed
 * call can no longer send the status that ends it (a replaced session's ABORTED, a decode
 * error's INVALID_ARGUMENT): the client would wait on a stream that never ends.
 */
async function* readMessages(call: ServerReadableStream<Buffer, unknown> | ServerDuplexStream<Buffer, unknown>, signal: AbortSignal): AsyncGenerator<Buffer> {
  const buffered: Buffer[] = [];
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const onData = (chunk: Buffer) => {
    buffered.push(chunk);
    if (buffered.length >= READ_HIGH_WATER) call.pause();
    notify();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (err: unknown) => {
    failure ??= err;
    onEnd();
  };
  call.on("data", onData);
  call.on("end", onEnd);
  call.on("close", onEnd);
  call.on("error", onError);
  signal.addEventListener("abort", onEnd, { once: true });
  try {
    for (;;) {
      const chunk = buffered.shift();
      if (chunk !== undefined) {
        if (buffered.length < READ_HIGH_WATER / 2 && call.isPaused()) call.resume();
        yield chunk;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    call.off("data", onData);
    call.off("end", onEnd);
    call.off("close", onEnd);
    call.off("error", onError);
    signal.removeEventListener("abort", onEnd);
  }
}

async function writeAll(call: ServerWritableStream<Buffer, unknown> | ServerDuplexStream<Buffer, unknown>, source: AsyncIterable<unknown>, signal: AbortSignal): Promise<void> {
  for await (const message of source) {
    if (signal.aborted) break;
    // Backpressure: when grpc-js buffers past its high-water mark, wait for 'drain'.
    if (!(call as { write(m: unknown): boolean }).write(message)) {
      await once(call, "drain", { signal });
    }
  }
}

type Call = ServerUnaryCall<Buffer, unknown> | ServerReadableStream<Buffer, unknown>;
type StreamCall = ServerWritableStream<Buffer, unknown> | ServerDuplexStream<Buffer, unknown>;

/** Runs a handler whose answer is one message (unary, client streaming). */
function answerOnce(method: DescMethod, path: string, call: Call, callback: sendUnaryData<unknown>, options: AdapterOptions, run: (ctx: HandlerContext) => Promise<unknown>): void {
  let ctx: HandlerContext | undefined;
  let done = () => {};
  void (async () => {
    ({ ctx, done } = makeContext(method, path, call, options));
    return run(ctx);
  })().then(
    (res) => {
      done();
      callback(null, res);
    },
    (err: unknown) => {
      done();
      callback(toServiceError(failure(err, () => ctx?.logger ?? options.logger)));
    },
  );
}

/** Runs a handler whose answer is a stream (server streaming, bidi), with backpressure. */
function answerStream(method: DescMethod, path: string, call: StreamCall, options: AdapterOptions, run: (ctx: HandlerContext) => AsyncIterable<unknown>): void {
  let ctx: HandlerContext | undefined;
  let done = () => {};
  void (async () => {
    ({ ctx, done } = makeContext(method, path, call, options));
    await writeAll(call, run(ctx), ctx.signal);
    // Ended from the server's side (shutdown, a revoked certificate): say why, not OK.
    const reason: unknown = ctx.signal.reason;
    if (reason instanceof BatonError && reason.code !== Code.CANCELLED) throw reason;
  })().then(
    () => {
      done();
      call.end();
    },
    (err: unknown) => {
      done();
      if (!call.cancelled) call.emit("error", toServiceError(failure(err, () => ctx?.logger ?? options.logger)));
    },
  );
}

function wrap(method: DescMethod, path: string, handler: unknown, options: AdapterOptions): handleUnaryCall<Buffer, unknown> | handleServerStreamingCall<Buffer, unknown> | handleClientStreamingCall<Buffer, unknown> | handleBidiStreamingCall<Buffer, unknown> {
  const input = method.input;
  switch (method.methodKind) {
    case "unary": {
      const fn = handler as (req: unknown, ctx: HandlerContext) => Promise<unknown>;
      return (call: ServerUnaryCall<Buffer, unknown>, callback: sendUnaryData<unknown>) => answerOnce(method, path, call, callback, options, (ctx) => fn(decodeRequest(input, call.request), ctx));
    }
    case "client_streaming": {
      const fn = handler as (reqs: AsyncIterable<unknown>, ctx: HandlerContext) => Promise<unknown>;
      return (call: ServerReadableStream<Buffer, unknown>, callback: sendUnaryData<unknown>) => answerOnce(method, path, call, callback, options, (ctx) => fn(decodeStream(input, call, ctx.signal), ctx));
    }
    case "server_streaming": {
      const fn = handler as (req: unknown, ctx: HandlerContext) => AsyncIterable<unknown>;
      return (call: ServerWritableStream<Buffer, unknown>) => answerStream(method, path, call, options, (ctx) => fn(decodeRequest(input, call.request), ctx));
    }
    case "bidi_streaming": {
      const fn = handler as (reqs: AsyncIterable<unknown>, ctx: HandlerContext) => AsyncIterable<unknown>;
      return (call: ServerDuplexStream<Buffer, unknown>) => answerStream(method, path, call, options, (ctx) => fn(decodeStream(input, call, ctx.signal), ctx));
    }
  }
}

function wrapUnimplemented(method: DescMethod, path: string): handleUnaryCall<Buffer, unknown> | handleBidiStreamingCall<Buffer, unknown> {
  const err = { code: Code.UNIMPLEMENTED, details: `${path} is not implemented by this server` };
  if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
    return ((_call: unknown, callback: sendUnaryData<unknown>) => callback(err)) as handleUnaryCall<Buffer, unknown>;
  }
  return (call: ServerDuplexStream<Buffer, unknown>) => {
    call.emit("error", err);
  };
}
