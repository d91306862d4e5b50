import { pino, type Logger, type LoggerOptions, type DestinationStream } from "pino";
import { Code } from "./errors.js";

export type { Logger } from "pino";

/** What the root logger is made from. */
export interface LoggingOptions {
  /** pino level: "trace" … "fatal", or "silent". Default "info". */
  level?: string;
  /** Where lines go; default stdout. */
  destination?: DestinationStream;
  /** Fields on every line (for example coordinator_id). */
  base?: Record<string, unknown>;
}

/** Secrets that must never reach a log line, whatever object carries them. */
const REDACT_PATHS = [
  "*.secret",
  "*.keyPem",
  "*.privateKey",
  "*.key",
  "secret",
  "keyPem",
  "privateKey",
  "req.headers.authorization",
  "metadata.authorization",
];

/** The root logger: JSON lines with an ISO `timestamp` field, secrets redacted. */
export function createLogger(options: LoggingOptions = {}): Logger {
  const opts: LoggerOptions = {
    level: options.level ?? "info",
    base: options.base ?? {},
    // The spec's logging fields name the time "timestamp".
    timestamp: () => `,"timestamp":"${new Date().toISOString()}"`,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    formatters: { level: (label) => ({ level: label }) },
  };
  return options.destination ? pino(opts, options.destination) : pino(opts);
}

/** The spec's logging fields for one protocol message. */
export interface ProtocolLogFields {
  correlation_id: string;
  source: string;
  destination: string;
  message_type: string;
}

/** Logs one protocol message with the spec's fields (timestamp comes from the logger). */
export function logProtocolMessage(
  logger: Logger,
  fields: ProtocolLogFields,
  msg = "protocol message",
  level: "debug" | "info" = "debug",
): void {
  logger[level](
    {
      correlation_id: fields.correlation_id,
      source: fields.source,
      destination: fields.destination,
      message_type: fields.message_type,
    },
    msg,
  );
}

// Node's codes for a stream or connection the other side ended: reset, closed early, gone.
const PEER_GONE_CODES = new Set([
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_STREAM_DESTROYED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ERR_HTTP2_STREAM_CANCEL",
  "ERR_HTTP2_STREAM_ERROR",
  "ERR_HTTP2_INVALID_STREAM",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_GOAWAY_SESSION",
]);

/** Whether `err` (or an error it wraps) is a peer going away: a cancelled call, a reset or closed connection, a stream ended early. */
export function isPeerGone(err: unknown): boolean {
  let e = err;
  for (let depth = 0; depth < 8 && e !== null && typeof e === "object"; depth++) {
    const code = (e as { code?: unknown }).code;
    // A string is Node's code; a number is a gRPC status (a grpc-js status object has no Error around it).
    if (typeof code === "string" ? PEER_GONE_CODES.has(code) : code === Code.CANCELLED) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** Logs a failure at error, unless it is the peer going away (isPeerGone): that is not baton's fault, and goes at debug. */
export function logFailure(logger: Logger, err: unknown, msg: string): void {
  if (!isPeerGone(err)) {
    logger.error({ err }, msg);
    return;
  }
  const { code, message, details } = err as { code?: unknown; message?: unknown; details?: unknown };
  const reason = typeof message === "string" ? message : typeof details === "string" ? details : undefined;
  logger.debug({ code: typeof code === "string" || typeof code === "number" ? code : undefined, reason }, `${msg}: the peer went away`);
}
