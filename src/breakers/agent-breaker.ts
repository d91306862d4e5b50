import { EventEmitter } from "node:events";
import CircuitBreaker from "opossum";
import type { Logger } from "../logging.js";

/** Breaker settings for agents. */
export interface BreakerOptions {
  /** How long an open breaker waits before letting one probe through, ms. */
  resetTimeoutMs: number;
  /** Failure percentage over the rolling window that opens the breaker. */
  errorThresholdPercentage: number;
  /** Deliveries in the window before the percentage counts. */
  volumeThreshold: number;
  /** Rolling window, ms. */
  rollingCountTimeoutMs: number;
}

/** "closed", "open" or "half_open", as Control shows it. */
export type BreakerState = "closed" | "open" | "half_open";

/**
 * An agent's circuit breaker (opossum). Each delivery goes through `fire`, whose action
 * settles when the agent answers (resolve) or is given up on (reject); opossum counts
 * outcomes, opens on failures, and while half-open lets exactly one probe through.
 */
export interface AgentBreaker {
  /** Runs `send` if the breaker allows, and resolves or rejects with the delivery's outcome. */
  fire(send: () => Promise<void>): Promise<void>;
  /** Forces the breaker open (agent_unavailable). */
  open(): void;
  /** Whether a new delivery would be let through now. */
  readonly allows: boolean;
  readonly state: BreakerState;
  /** Stops its timers. */
  shutdown(): void;
}

/** opossum's default: the rolling window is counted in this many buckets. */
const BUCKETS = 10;

/**
 * One timer that turns the rolling window of many breakers (opossum's
 * rotateBucketController). Left to itself, opossum gives each breaker two intervals of
 * its own, a bucket rotation and a stats snapshot, each firing every window/10: with
 * 1,000 agents that was 2,000 timer callbacks a second, a sort of latencies in each
 * snapshot, and about a third of an idle coordinator's JavaScript time. The timer runs
 * only while some breaker listens.
 */
export function createBreakerClock(rollingCountTimeoutMs: number): EventEmitter {
  const clock = new EventEmitter();
  clock.setMaxListeners(0);
  let timer: NodeJS.Timeout | undefined;
  clock.on("newListener", (event: string) => {
    if (event !== "rotate" || timer) return;
    timer = setInterval(() => clock.emit("rotate"), Math.floor(rollingCountTimeoutMs / BUCKETS));
    timer.unref();
  });
  clock.on("removeListener", (event: string) => {
    if (event !== "rotate" || clock.listenerCount("rotate") > 0) return;
    clearInterval(timer);
    timer = undefined;
  });
  return clock;
}

/** One named breaker per agent, its transitions logged and reported; `clock` (createBreakerClock) turns its window. */
export function createAgentBreaker(agentId: string, options: BreakerOptions, logger: Logger, onChange: (state: BreakerState) => void, clock?: EventEmitter): AgentBreaker {
  let probing = false;
  let stopped = false;
  // Made at the first delivery or forced open: until then it is closed, and a fleet of idle
  // agents does not pay opossum's ~8 KB each (its window, status and listeners).
  let made: CircuitBreaker | undefined;
  const breaker = (): CircuitBreaker => {
    if (made) return made;
    made = new CircuitBreaker((send: () => Promise<void>) => send(), {
      name: `agent:${agentId}`,
      // Deliveries time out in the outbox (ack timeout, retries, leases), not here.
      timeout: false,
      resetTimeout: options.resetTimeoutMs,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      rollingCountTimeout: options.rollingCountTimeoutMs,
      rollingCountBuckets: BUCKETS,
      // Nothing reads the snapshots or the latency percentiles; delivery times are on /metrics.
      enableSnapshots: false,
      rollingPercentilesEnabled: false,
      ...(clock ? { rotateBucketController: clock } : {}),
    });
    made.on("open", () => {
      probing = false;
      logger.warn({ breaker: `agent:${agentId}` }, "breaker open: agent unavailable");
      onChange("open");
    });
    made.on("halfOpen", () => {
      logger.info({ breaker: `agent:${agentId}` }, "breaker half-open: one probe may pass");
      onChange("half_open");
    });
    made.on("close", () => {
      probing = false;
      logger.info({ breaker: `agent:${agentId}` }, "breaker closed");
      onChange("closed");
    });
    if (stopped) made.shutdown();
    return made;
  };
  const state = (): BreakerState => (!made ? "closed" : made.opened ? "open" : made.halfOpen ? "half_open" : "closed");
  return {
    fire(send) {
      const b = breaker();
      if (b.halfOpen) probing = true;
      return b.fire(send) as Promise<void>;
    },
    open() {
      const b = breaker();
      if (!b.opened) b.open();
    },
    get allows() {
      const s = state();
      return s === "closed" || (s === "half_open" && !probing);
    },
    get state() {
      return state();
    },
    shutdown() {
      stopped = true;
      made?.shutdown();
    },
  };
}
