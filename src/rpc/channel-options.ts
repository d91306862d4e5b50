import type { ChannelOptions } from "@grpc/grpc-js";

/** Transport limits, in one typed place so no grpc-js option name can be misspelt. */
export interface TransportLimits {
  /** Largest message accepted, bytes. */
  maxReceiveMessageBytes: number;
  /** Largest message sent, bytes. */
  maxSendMessageBytes: number;
  /** Concurrent streams per HTTP/2 connection. */
  maxConcurrentStreams: number;
  /** Ping the peer after this long without activity, ms. */
  keepaliveTimeMs: number;
  /** Drop the connection when a ping is unanswered this long, ms. */
  keepaliveTimeoutMs: number;
  /** Close connections idle this long, ms (server only). */
  maxConnectionIdleMs: number;
  /** Close connections older than this, ms (server only); agents resume elsewhere. */
  maxConnectionAgeMs: number;
  /** Grace after max age for calls to finish, ms (server only). */
  maxConnectionAgeGraceMs: number;
}

/** Defaults sized for long-lived agent sessions. */
export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  maxReceiveMessageBytes: 4 * 1024 * 1024,
  maxSendMessageBytes: 4 * 1024 * 1024,
  maxConcurrentStreams: 1000,
  keepaliveTimeMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  // Agent sessions are long-lived streams; an idle connection is one with no calls at all.
  maxConnectionIdleMs: 30 * 60_000,
  // Zero disables: age limits force agents to reconnect, so they are off by default.
  maxConnectionAgeMs: 0,
  maxConnectionAgeGraceMs: 30_000,
};

/** The server's grpc-js options. */
export function serverChannelOptions(limits: TransportLimits): ChannelOptions {
  const options: ChannelOptions = {
    "grpc.max_receive_message_length": limits.maxReceiveMessageBytes,
    "grpc.max_send_message_length": limits.maxSendMessageBytes,
    "grpc.max_concurrent_streams": limits.maxConcurrentStreams,
    "grpc.keepalive_time_ms": limits.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": limits.keepaliveTimeoutMs,
    // Clients ping at most every 10 s (agents keep their sessions alive with it).
    "grpc.http2.min_ping_interval_without_data_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.max_connection_idle_ms": limits.maxConnectionIdleMs,
  };
  if (limits.maxConnectionAgeMs > 0) {
    options["grpc.max_connection_age_ms"] = limits.maxConnectionAgeMs;
    options["grpc.max_connection_age_grace_ms"] = limits.maxConnectionAgeGraceMs;
  }
  return options;
}

/** A client's grpc-js options. */
export function clientChannelOptions(limits: Partial<TransportLimits> = {}): ChannelOptions {
  const l = { ...DEFAULT_TRANSPORT_LIMITS, ...limits };
  return {
    "grpc.max_receive_message_length": l.maxReceiveMessageBytes,
    "grpc.max_send_message_length": l.maxSendMessageBytes,
    "grpc.keepalive_time_ms": l.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": l.keepaliveTimeoutMs,
    "grpc.keepalive_permit_without_calls": 1,
    // baton publishes no service config in DNS; without this every channel also asks for a
    // TXT record of the coordinator's name (one more query per agent connecting).
    "grpc.service_config_disable_resolution": 1,
  };
}
