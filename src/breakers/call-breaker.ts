import CircuitBreaker from "opossum";
import { Code } from "../errors.js";
import type { Logger } from "../logging.js";

/** Settings of a breaker around calls to another process. */
export interface CallBreakerOptions {
  /** A call slower than this fails (opossum's timeout), ms. Default 5000. */
  timeoutMs?: number;
  /** How long it stays open before one probe, ms. Default 10000. */
  resetTimeoutMs?: number;
  /** Failure percentage that opens it. Default 50. */
  errorThresholdPercentage?: number;
  /** Calls in the window before the percentage counts. Default 5. */
  volumeThreshold?: number;
}

// The caller's own mistakes say nothing about the peer's health: they do not trip the breaker.
const CALLER_FAULTS = new Set<number>([Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.ALREADY_EXISTS, Code.ABORTED, Code.FAILED_PRECONDITION, Code.PERMISSION_DENIED, Code.OUT_OF_RANGE, Code.UNIMPLEMENTED]);

/** A breaker-guarded way to call a peer. */
export interface CallBreaker {
  /** Runs the call through the breaker: while open it fails fast (EOPENBREAKER, mapped to UNAVAILABLE). */
  call<T>(fn: () => Promise<T>): Promise<T>;
  readonly state: "closed" | "open" | "half_open";
  /** Closes it at once: the failures it counted were another peer's (a new instance took over). */
  reset(): void;
  shutdown(): void;
}

/** A named breaker (opossum) for calls to another process, its transitions logged. */
export function createCallBreaker(name: string, logger: Logger, options: CallBreakerOptions = {}): CallBreaker {
  const build = () => {
    const b = new CircuitBreaker((fn: () => Promise<unknown>) => fn(), {
      name,
      timeout: options.timeoutMs ?? 5000,
      resetTimeout: options.resetTimeoutMs ?? 10_000,
      errorThresholdPercentage: options.errorThresholdPercentage ?? 50,
      volumeThreshold: options.volumeThreshold ?? 5,
      errorFilter: (err: { code?: unknown }) => typeof err?.code === "number" && CALLER_FAULTS.has(err.code),
    });
    b.on("open", () => logger.warn({ breaker: name }, "breaker open: calls fail fast"));
    b.on("halfOpen", () => logger.info({ breaker: name }, "breaker half-open: one probe may pass"));
    b.on("close", () => logger.info({ breaker: name }, "breaker closed"));
    return b;
  };
  let breaker = build();
  return {
    call: <T>(fn: () => Promise<T>) => breaker.fire(fn) as Promise<T>,
    get state() {
      return breaker.opened ? "open" : breaker.halfOpen ? "half_open" : "closed";
    },
    reset: () => {
      if (breaker.opened || breaker.halfOpen) logger.info({ breaker: name }, "breaker reset: another instance took over");
      // A new breaker, not close(): opossum's close() keeps the rolling counts, so the old instance's failures would open it again at the first failure.
      const old = breaker;
      breaker = build();
      old.shutdown();
    },
    shutdown: () => breaker.shutdown(),
  };
}
