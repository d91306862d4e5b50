import type { PeerCertificate } from "node:tls";
import type { Logger } from "../logging.js";

/** What a handler knows about its caller, without touching grpc-js. */
export interface PeerInfo {
  /** "ipv4:127.0.0.1:53412" or similar, as grpc-js reports it. */
  address: string;
  /** The verified client certificate, when the transport is mutual TLS. */
  certificate: PeerCertificate | undefined;
}

/** The per-call context every handler gets (like connect-es's HandlerContext). */
export interface HandlerContext {
  /** "/baton.v1.Control/ListAgents". */
  readonly method: string;
  /** Aborted when the client cancels, the deadline passes, or the server shuts down. */
  readonly signal: AbortSignal;
  /** The call's deadline, if the client set one. */
  readonly deadline: Date | undefined;
  /** Request headers, lower-case names; binary headers are skipped. */
  readonly requestHeader: ReadonlyMap<string, string>;
  /** The caller. */
  readonly peer: PeerInfo;
  /** The caller's identity, as the server's authenticate hook resolved it. */
  readonly identity: unknown;
  /** From the x-correlation-id header, or made up for this call. */
  readonly correlationId: string;
  /** A child logger carrying method and correlation_id, made on first use. */
  readonly logger: Logger;
}

/** The metadata header that carries the correlation id between processes. */
export const CORRELATION_HEADER = "x-correlation-id";
