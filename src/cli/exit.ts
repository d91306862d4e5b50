import { ConfigError } from "../config-errors.js";

// The gRPC status names by code, here rather than from grpc-js: the CLI prints them without loading it.
const STATUS = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"] as const;
const UNAVAILABLE = 14;

/** The exit codes of every `baton` command (sysexits.h where one fits). */
export const EXIT = {
  ok: 0,
  /** Anything else: the message says what, with the gRPC status when a call failed. */
  failure: 1,
  /** A bad command line (EX_USAGE is 64, but 2 is what shells and most CLIs use). */
  usage: 2,
  /** EX_UNAVAILABLE: the coordinator could not be reached. */
  unavailable: 69,
  /** EX_CONFIG: a bad setting, context, certificate path or policy file. */
  config: 78,
} as const;

/** A usage mistake: printed with a pointer to --help, exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** A failed call to the coordinator, already described (status and address); keeps the gRPC code for the exit code. */
export class CallError extends Error {
  override readonly name = "CallError";
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

interface GrpcFailure {
  code: number;
  details?: string;
  message: string;
}

function grpcFailure(err: unknown): GrpcFailure | undefined {
  const e = err as Partial<GrpcFailure> | undefined;
  // A grpc-js ServiceError (a client call) or a BatonError: both carry a numeric status code.
  return e && typeof e.code === "number" && typeof e.message === "string" && STATUS[e.code] !== undefined ? (e as GrpcFailure) : undefined;
}

/** The exit code for an error a command threw. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError) return EXIT.usage;
  // PolicyError comes from the security module; matched by name so the CLI need not import it.
  if (err instanceof ConfigError || (err as Error | undefined)?.name === "PolicyError") return EXIT.config;
  const grpc = grpcFailure(err);
  if (grpc?.code === UNAVAILABLE) return EXIT.unavailable;
  return EXIT.failure;
}

/** The one line printed for an error: a failed call names its gRPC status ("NOT_FOUND: no task ..."). */
export function describeError(err: unknown, address?: string): string {
  if (err instanceof CallError) return err.message;
  const grpc = grpcFailure(err);
  if (grpc && (err as { name?: string }).name !== "ConfigError") {
    const details = grpc.details ?? grpc.message.replace(/^\d+ [A-Z_]+: /, "");
    const status = STATUS[grpc.code];
    if (grpc.code === UNAVAILABLE) return `${status}: the coordinator${address ? ` at ${address}` : ""} is unavailable: ${details} (is \`baton serve\` running? check --address or the context)`;
    return `${status}: ${details}`;
  }
  return (err as Error | undefined)?.message ?? String(err);
}
