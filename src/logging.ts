import { pino, type Logger, type LoggerOptions, type DestinationStream } from "pino";
import pretty from "pino-pretty";
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
  /**
   * Coloured, human-readable lines (pino-pretty) instead of JSON. Default: when no
   * destination is given and stdout is a terminal; JSON whenever it is piped or collected.
   */
  pretty?: boolean;
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

/** The root logger: JSON lines with an ISO `timestamp` field, secrets redacted; pretty and coloured on a terminal. */
export function createLogger(options: LoggingOptions = {}): Logger {
  const opts: LoggerOptions = {
    level: options.level ?? "info",
    base: options.base ?? {},
    // The spec's logging fields name the time "timestamp".
    timestamp: () => `,"timestamp":"${new Date().toISOString()}"`,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    formatters: { level: (label) => ({ level: label }) },
  };
  if (options.destination) return options.pretty ? pino(opts, prettyStream(options.destination)) : pino(opts, options.destination);
  if (options.pretty ?? process.stdout.isTTY === true) return pino(opts, prettyStream());
  return pino(opts);
}

/** pino-pretty, in process (no worker thread): local time, the level in colour, the message, then the fields on one line. */
function prettyStream(destination?: DestinationStream): DestinationStream {
  return pretty({
    colorize: !destination,
    timestampKey: "timestamp",
    translateTime: "SYS:HH:MM:ss.l",
    // The same on every line of one process: the banner names it once.
    ignore: "coordinator_id",
    singleLine: true,
    // Written as it is logged, so lines and the start-up banner reach a terminal in order.
    sync: true,
    ...(destination ? { destination } : {}),
  });
}

// What each protocol message is called in a log line: "directive sent", "directive ack received".
const MESSAGE_NAMES: Record<string, string> = {
  coordination_directive: "directive",
  agent_status_request: "status request",
  agent_status_response: "status response",
  directive_ack: "directive ack",
  progress_update: "progress update",
  task_completion: "task completion",
  completion_ack: "completion ack",
  directive_cancel: "cancellation",
  key_rotation: "key rotation",
  metrics_request: "metrics request",
  system_metrics: "system metrics",
  metrics_update: "metrics update",
  performance_report: "performance report",
  resource_query: "resource query",
  resource_status: "resource status",
};

/** A protocol message's log line: its name and what happened to it ("directive sent"). */
export function protocolMessageText(messageType: string, what: string): string {
  return `${MESSAGE_NAMES[messageType] ?? messageType.replaceAll("_", " ")} ${what}`;
}

/** The spec's logging fields for one protocol message. */
export interface ProtocolLogFields {
  correlation_id: string;
  source: string;
  destination: string;
  message_type: string;
}

/**
 * Logs one protocol message with the spec's fields (timestamp comes from the logger). `what`
 * happened to it, "sent" or "received", becomes the line's message with the message's name:
 * "directive sent", "task completion received".
 */
export function logProtocolMessage(
  logger: Logger,
  fields: ProtocolLogFields,
  what = "seen",
  level: "debug" | "info" = "debug",
): void {
  // Built only when the line is written: these run for every message of every agent.
  if (!logger.isLevelEnabled(level)) return;
  logger[level](
    {
      correlation_id: fields.correlation_id,
      source: fields.source,
      destination: fields.destination,
      message_type: fields.message_type,
    },
    protocolMessageText(fields.message_type, what),
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
