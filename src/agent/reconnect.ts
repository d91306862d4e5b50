import { Code } from "../errors.js";

/** How a session (or an attempt at one) ended. */
export interface SessionEnd {
  code: Code;
  message: string;
}

// Statuses after which reconnecting cannot help: the coordinator refused this agent.
const FINAL = new Set([Code.PERMISSION_DENIED, Code.UNAUTHENTICATED, Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION, Code.ABORTED, Code.UNIMPLEMENTED]);

// grpc-js reports a failed TLS handshake as UNAVAILABLE, with only Node's message in the
// details: "self-signed certificate in certificate chain", "certificate has expired",
// "Hostname/IP does not match certificate's altnames", "unable to verify the first
// certificate". Each names the certificate, and none heals by retrying. (A client
// certificate the coordinator refuses shows only as "Failed to connect": check it before
// connecting, see certificateProblem in the security module.)
const TLS_REFUSAL = /\bcertificate\b/i;

/** The end as a final refusal (retrying cannot help), or undefined when the coordinator may be back later. */
export function finalRefusal(end: SessionEnd): SessionEnd | undefined {
  if (FINAL.has(end.code)) return end;
  if (end.code === Code.UNAVAILABLE && TLS_REFUSAL.test(end.message)) {
    return { code: Code.UNAUTHENTICATED, message: `the coordinator's certificate is not trusted: ${end.message}` };
  }
  return undefined;
}

/** Wait before attempt `failures` (1, 2, ...): exponential from initialMs, capped at maxMs, with "equal jitter" (half fixed, half random). */
export function backoffMs(failures: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** (failures - 1));
  return Math.round(base / 2 + random() * (base / 2));
}
