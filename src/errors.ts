import { status } from "@grpc/grpc-js";

/** gRPC status codes, re-exported so modules outside rpc/ never import grpc-js. */
export const Code = status;
/** A gRPC status code. */
export type Code = status;

/** The trailer in which a follower coordinator names the leader ("host:port"). */
export const LEADER_TRAILER = "baton-leader";

/** How much of a caller's value an error message quotes, characters. */
export const QUOTE_CHARS = 64;

/**
 * Longest error message, characters. A status message travels in the HTTP/2 trailers,
 * which the peer caps (grpc-js: 8 KiB of metadata by default); past that the caller gets
 * no answer at all. Messages quote with quote(), so this only guards against a slip.
 */
export const MAX_MESSAGE_CHARS = 1024;

/** A caller's value for an error message: JSON-quoted, at most QUOTE_CHARS of it, "…" when cut. */
export function quote(value: string, max = QUOTE_CHARS): string {
  return value.length > max ? `${JSON.stringify(value.slice(0, max))}…` : JSON.stringify(value);
}

/** The one error type that carries a gRPC status code (like connect's ConnectError). */
export class BatonError extends Error {
  override readonly name = "BatonError";

  /** Sent with the status as trailing metadata ("baton-leader": where a follower's caller should go). */
  readonly trailers: Readonly<Record<string, string>>;

  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown; trailers?: Record<string, string> },
  ) {
    super(message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.trailers = options?.trailers ?? {};
  }

  /** Wraps anything thrown: a BatonError stays as it is, anything else becomes INTERNAL. */
  static from(err: unknown): BatonError {
    if (err instanceof BatonError) return err;
    return toBatonError(err);
  }
}

/** INVALID_ARGUMENT: the input is bad whatever the state. */
export function invalidArgument(message: string): BatonError {
  return new BatonError(Code.INVALID_ARGUMENT, message);
}

/** FAILED_PRECONDITION: the current state forbids it. */
export function failedPrecondition(message: string): BatonError {
  return new BatonError(Code.FAILED_PRECONDITION, message);
}

/** NOT_FOUND. */
export function notFound(message: string): BatonError {
  return new BatonError(Code.NOT_FOUND, message);
}

/** PERMISSION_DENIED: authenticated, but not allowed. */
export function permissionDenied(message: string): BatonError {
  return new BatonError(Code.PERMISSION_DENIED, message);
}

/** UNAUTHENTICATED: no acceptable identity. */
export function unauthenticated(message: string): BatonError {
  return new BatonError(Code.UNAUTHENTICATED, message);
}

/** UNAVAILABLE: transient; the caller may retry. */
export function unavailable(message: string): BatonError {
  return new BatonError(Code.UNAVAILABLE, message);
}

/** DEADLINE_EXCEEDED. */
export function deadlineExceeded(message: string): BatonError {
  return new BatonError(Code.DEADLINE_EXCEEDED, message);
}

/** RESOURCE_EXHAUSTED. */
export function resourceExhausted(message: string): BatonError {
  return new BatonError(Code.RESOURCE_EXHAUSTED, message);
}

/** ABORTED: a conflict (for example a stale reservation version). */
export function aborted(message: string): BatonError {
  return new BatonError(Code.ABORTED, message);
}

/** UNIMPLEMENTED. */
export function unimplemented(message: string): BatonError {
  return new BatonError(Code.UNIMPLEMENTED, message);
}

/** CANCELLED. */
export function cancelled(message: string): BatonError {
  return new BatonError(Code.CANCELLED, message);
}

/**
 * The one place that maps whatever was thrown to a status. Causes and stacks never
 * reach clients: an unknown error becomes INTERNAL with a generic message, and the
 * caller logs the original.
 */
export function toBatonError(err: unknown): BatonError {
  if (err instanceof BatonError) return err;
  if (err instanceof Error) {
    if (err.name === "AbortError") {
      return new BatonError(Code.CANCELLED, "the operation was cancelled", { cause: err });
    }
    if (err.name === "TimeoutError") {
      return new BatonError(Code.DEADLINE_EXCEEDED, "the operation timed out", { cause: err });
    }
    // opossum rejects with code EOPENBREAKER while a breaker is open and ETIMEDOUT on its timeout.
    const code = (err as { code?: unknown }).code;
    if (code === "EOPENBREAKER") {
      return new BatonError(Code.UNAVAILABLE, "the peer is unavailable (circuit open)", { cause: err });
    }
    if (code === "ETIMEDOUT") {
      return new BatonError(Code.DEADLINE_EXCEEDED, "the peer did not answer in time", { cause: err });
    }
    // A grpc-js client error: keep its code and the peer's message.
    if (typeof code === "number" && "details" in err && code in Code) {
      return new BatonError(code as Code, String((err as { details: unknown }).details), { cause: err, trailers: batonTrailers((err as { metadata?: unknown }).metadata) });
    }
  }
  return new BatonError(Code.INTERNAL, "internal error", { cause: err });
}

// The baton-* trailers of a grpc-js client error (a follower's baton-leader), as strings.
function batonTrailers(metadata: unknown): Record<string, string> {
  const map = (metadata as { getMap?: () => Record<string, unknown> } | undefined)?.getMap?.() ?? {};
  return Object.fromEntries(Object.entries(map).filter(([k, v]) => k.startsWith("baton-") && typeof v === "string")) as Record<string, string>;
}
