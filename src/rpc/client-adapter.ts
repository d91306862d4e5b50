import { once } from "node:events";
import {
  Client as GrpcClient,
  Metadata,
  type CallOptions as GrpcCallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientReadableStream,
  type ClientDuplexStream,
  type ServiceError,
} from "@grpc/grpc-js";
import { create, type DescMessage, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { CORRELATION_HEADER } from "./context.js";
import { encodeBuffer } from "./fast-binary.js";
import { decodeBinary } from "./fast-decode.js";

/** Per-call options for a typed client. */
export interface CallOptions {
  /** Cancels the call. */
  signal?: AbortSignal;
  /** Milliseconds from now, or an absolute Date. */
  deadline?: number | Date;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Sent as x-correlation-id. */
  correlationId?: string;
}

type InInit<M extends DescMethod> = MessageInitShape<M["input"]>;
type Out<M extends DescMethod> = MessageShape<M["output"]>;

/** A client method, shaped by its kind. */
export type ClientMethod<M extends DescMethod> = M extends { methodKind: "unary" }
  ? (request: InInit<M>, options?: CallOptions) => Promise<Out<M>>
  : M extends { methodKind: "server_streaming" }
    ? (request: InInit<M>, options?: CallOptions) => AsyncIterable<Out<M>>
    : M extends { methodKind: "client_streaming" }
      ? (requests: AsyncIterable<InInit<M>>, options?: CallOptions) => Promise<Out<M>>
      : M extends { methodKind: "bidi_streaming" }
        ? (requests: AsyncIterable<InInit<M>>, options?: CallOptions) => AsyncIterable<Out<M>>
        : never;

/** A typed client for a generated service. */
export type ServiceClient<S extends DescService> = {
  [K in keyof S["method"]]: ClientMethod<S["method"][K]>;
};

/** One HTTP/2 connection (a grpc-js channel) that clients of several services share. */
export type Channel = GrpcClient;

/** Opens a channel; close it with `channel.close()`. */
export function createChannel(address: string, credentials: ChannelCredentials, options: ChannelOptions = {}): Channel {
  return new GrpcClient(address, credentials, options);
}

function grpcOptions(options: CallOptions | undefined): { metadata: Metadata; call: GrpcCallOptions } {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(options?.headers ?? {})) metadata.set(key, value);
  if (options?.correlationId) metadata.set(CORRELATION_HEADER, options.correlationId);
  const call: GrpcCallOptions = {};
  if (options?.deadline !== undefined) {
    call.deadline = options.deadline instanceof Date ? options.deadline : Date.now() + options.deadline;
  }
  return { metadata, call };
}

function serializer<Desc extends DescMessage>(schema: Desc): (init: MessageInitShape<Desc>) => Buffer {
  // create() keeps an already-built message as it is and fills in an init object.
  return (init) => encodeBuffer(schema, create(schema, init));
}

function deserializer<Desc extends DescMessage>(schema: Desc): (bytes: Buffer) => MessageShape<Desc> {
  return (bytes) => decodeBinary(schema, bytes);
}

function abortOn(signal: AbortSignal | undefined, cancel: () => void): () => void {
  if (!signal) return () => {};
  if (signal.aborted) {
    cancel();
    return () => {};
  }
  signal.addEventListener("abort", cancel, { once: true });
  return () => signal.removeEventListener("abort", cancel);
}

async function* readAll<T>(call: ClientReadableStream<T> | ClientDuplexStream<unknown, T>, release: () => void): AsyncGenerator<T> {
  try {
    for await (const message of call as AsyncIterable<T>) yield message;
  } finally {
    release();
    // Leaving the loop early (break, return) must not leave the call open.
    call.cancel();
  }
}

async function pump<T>(call: ClientDuplexStream<T, unknown> | import("@grpc/grpc-js").ClientWritableStream<T>, source: AsyncIterable<T>): Promise<void> {
  try {
    for await (const message of source) {
      if (!call.write(message)) await once(call, "drain");
    }
    call.end();
  } catch {
    // The source failed or the call ended under us: the call's own status says why.
    call.cancel();
  }
}

/** A typed client for `service` over `channel`: requests built with create(), responses decoded with decodeBinary (fromBinary's result, faster). */
export function createClient<S extends DescService>(service: S, channel: Channel): ServiceClient<S> {
  const client: Record<string, unknown> = {};
  for (const method of service.methods) {
    const path = `/${service.typeName}/${method.name}`;
    const ser = serializer(method.input);
    const des = deserializer(method.output);
    switch (method.methodKind) {
      case "unary":
        client[method.localName] = (request: MessageInitShape<DescMessage>, options?: CallOptions) =>
          new Promise((resolve, reject) => {
            const { metadata, call: callOptions } = grpcOptions(options);
            let release = () => {};
            const call = channel.makeUnaryRequest(path, ser, des, request, metadata, callOptions, (err: ServiceError | null, res?: unknown) => {
              release();
              if (err) reject(err);
              else resolve(res);
            });
            release = abortOn(options?.signal, () => call.cancel());
          });
        break;
      case "server_streaming":
        client[method.localName] = (request: MessageInitShape<DescMessage>, options?: CallOptions) => {
          const { metadata, call: callOptions } = grpcOptions(options);
          const call = channel.makeServerStreamRequest(path, ser, des, request, metadata, callOptions);
          return readAll(call, abortOn(options?.signal, () => call.cancel()));
        };
        break;
      case "client_streaming":
        client[method.localName] = (requests: AsyncIterable<MessageInitShape<DescMessage>>, options?: CallOptions) =>
          new Promise((resolve, reject) => {
            const { metadata, call: callOptions } = grpcOptions(options);
            let release = () => {};
            const call = channel.makeClientStreamRequest(path, ser, des, metadata, callOptions, (err: ServiceError | null, res?: unknown) => {
              release();
              if (err) reject(err);
              else resolve(res);
            });
            release = abortOn(options?.signal, () => call.cancel());
            void pump(call, requests);
          });
        break;
      case "bidi_streaming":
        client[method.localName] = (requests: AsyncIterable<MessageInitShape<DescMessage>>, options?: CallOptions) => {
          const { metadata, call: callOptions } = grpcOptions(options);
          const call = channel.makeBidiStreamRequest(path, ser, des, metadata, callOptions);
          void pump(call, requests);
          return readAll(call, abortOn(options?.signal, () => call.cancel()));
        };
        break;
    }
  }
  return client as ServiceClient<S>;
}
