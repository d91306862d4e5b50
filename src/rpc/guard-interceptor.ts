import { Metadata, ResponderBuilder, ServerInterceptingCall, ServerListenerBuilder, type ServerInterceptor } from "@grpc/grpc-js";
import { toBatonError, type BatonError } from "../errors.js";
import type { PeerInfo } from "./context.js";

/** What a guard sees of a call: its method and caller, before any message is read. */
export interface GuardedCall {
  /** "/baton.v1.Control/SubmitTask". */
  method: string;
  peer: PeerInfo;
  /** Request headers, lower-case names; binary headers are skipped. */
  headers: ReadonlyMap<string, string>;
}

/** Returns a BatonError to refuse the call, undefined to let it through. */
export type CallGuard = (call: GuardedCall) => BatonError | undefined;

/** Request headers as a map of text values (binary "-bin" headers are left out). */
export function headersOf(metadata: Metadata): Map<string, string> {
  const headers = new Map<string, string>();
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (typeof value === "string") headers.set(key, value);
  }
  return headers;
}

/**
 * A grpc-js server interceptor that runs the guard on every call of every service the
 * server has (health and reflection included, which bypass the service adapter), so no
 * handler can forget. A refused call ends with the guard's status; its handler never runs.
 */
export function guardInterceptor(guard: CallGuard): ServerInterceptor {
  return (descriptor, call) => {
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        let refusal: BatonError | undefined;
        try {
          const peer: PeerInfo = { address: call.getPeer(), certificate: call.getAuthContext().sslPeerCertificate };
          refusal = guard({ method: descriptor.path, peer, headers: headersOf(metadata) });
        } catch (err) {
          refusal = toBatonError(err);
        }
        if (refusal) call.sendStatus({ code: refusal.code, details: refusal.message, metadata: new Metadata() });
        else next(metadata);
      })
      .build();
    return new ServerInterceptingCall(call, new ResponderBuilder().withStart((next) => next(listener)).build());
  };
}
