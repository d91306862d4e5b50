import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { ConnectResponseSchema, type ConnectResponse, type Hello } from "../../gen/baton/v1/session_pb.js";
import { ClockSkewError, describeSkew } from "../security/index.js";

/** The agent's clock skew measured from Hello.sent_at, and its refusal when signed batches could not pass the replay window. */
export interface HelloClockSkew {
  /** The agent's clock minus the coordinator's, ms (less the transit time). */
  skewMs: number;
  /** Set when message security is on and the skew is beyond the replay window. */
  refusal: ClockSkewError | undefined;
}

/**
 * Measures an agent's clock skew from its Hello; undefined when the Hello carries no
 * sent_at. `replayWindowMs` is undefined when message security is off: then no skew is refused.
 */
export function helloClockSkew(hello: Hello, replayWindowMs: number | undefined, now: number): HelloClockSkew | undefined {
  if (!hello.sentAt) return undefined;
  const skewMs = timestampMs(hello.sentAt) - now;
  if (replayWindowMs === undefined || Math.abs(skewMs) <= replayWindowMs) return { skewMs, refusal: undefined };
  const refusal = new ClockSkewError(
    skewMs,
    replayWindowMs,
    `clock skew: agent ${hello.agentId}'s clock is ${describeSkew(skewMs)} the coordinator's (by its Hello.sent_at), beyond the ${replayWindowMs} ms replay window, so its signed messages could not be verified; correct its clock (NTP)`,
  );
  return { skewMs, refusal };
}

/**
 * The answer to a Hello refused for clock skew: a Welcome with only the coordinator's time
 * and replay window (no keys; its session id is never opened), so the agent can measure its
 * skew and name it in its own error, then the refusal itself.
 */
export async function* clockSkewRefusal(refusal: ClockSkewError, options: { coordinatorId: string; protocolVersion: string }): AsyncGenerator<ConnectResponse, never> {
  yield create(ConnectResponseSchema, {
    kind: {
      case: "welcome",
      value: { sessionId: randomUUID(), coordinatorId: options.coordinatorId, protocolVersion: options.protocolVersion, serverTime: timestampNow(), replayWindow: durationFromMs(refusal.windowMs) },
    },
  });
  throw refusal;
}
