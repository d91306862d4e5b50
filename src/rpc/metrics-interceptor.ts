import { ResponderBuilder, ServerInterceptingCall, ServerListenerBuilder, type ServerInterceptor } from "@grpc/grpc-js";

/** go-grpc-prometheus's grpc_type: how a method streams. */
export type GrpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

/** One method's counters, resolved once per method so a call costs a few increments. */
export interface MethodObserver {
  started(): void;
  received(): void;
  sent(): void;
  /** The call ended with this gRPC status code, after `seconds`. */
  handled(code: number, seconds: number): void;
}

/** Gives the observer of a method ("/baton.v1.Control/SubmitTask", "unary"). */
export type CallObserver = (path: string, type: GrpcType) => MethodObserver;

const typeOf = (requestStream: boolean, responseStream: boolean): GrpcType =>
  requestStream ? (responseStream ? "bidi_stream" : "client_stream") : responseStream ? "server_stream" : "unary";

/**
 * A grpc-js server interceptor that tells an observer of every call of every service (health,
 * reflection and calls refused by the guard included, when it is the first interceptor):
 * started, each message received and sent, and its status with how long it took.
 */
export function callMetricsInterceptor(observe: CallObserver): ServerInterceptor {
  const methods = new Map<string, MethodObserver>();
  return (descriptor, call) => {
    let m = methods.get(descriptor.path);
    if (!m) methods.set(descriptor.path, (m = observe(descriptor.path, typeOf(descriptor.requestStream, descriptor.responseStream))));
    const method = m;
    const start = performance.now();
    method.started();
    let ended = false;
    const end = (code: number) => {
      if (ended) return;
      ended = true;
      method.handled(code, (performance.now() - start) / 1000);
    };
    const listener = new ServerListenerBuilder()
      .withOnReceiveMessage((message, next) => {
        method.received();
        next(message);
      })
      // A call the client cancels may never send a status: it is counted as CANCELLED (1).
      .withOnCancel(() => end(1))
      .build();
    const responder = new ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendMessage((message, next) => {
        method.sent();
        next(message);
      })
      .withSendStatus((status, next) => {
        end(status.code);
        next(status);
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };
}
