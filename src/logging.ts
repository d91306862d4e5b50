import { pino, type Logger, type LoggerOptions, type DestinationStream } from "pino";

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
