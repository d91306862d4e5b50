import { BatonError, Code, invalidArgument, resourceExhausted, unauthenticated } from "../../errors.js";

/** 5 min: how far a message's timestamp may be from the receiver's clock, either way. */
export const DEFAULT_REPLAY_WINDOW_MS = 5 * 60 * 1000;
/** Message ids remembered at most; at 5 min that admits about 3,300 messages/s sustained. */
export const DEFAULT_REPLAY_MAX_ENTRIES = 1_000_000;

// Ids are dropped a bucket at a time, a 16th of the window: each is kept at most 2/16 longer.
const BUCKETS_PER_WINDOW = 16;

/**
 * UNAUTHENTICATED: a message's timestamp is outside the replay window. `offsetMs` is the
 * timestamp minus the receiver's clock (negative: stale; positive: from the future), so a
 * caller can tell a skewed clock from a message that is really old.
 */
export class TimestampWindowError extends BatonError {
  constructor(
    readonly offsetMs: number,
    readonly windowMs: number,
  ) {
    super(
      Code.UNAUTHENTICATED,
      offsetMs < 0
        ? `the message timestamp is stale (${-offsetMs} ms old; the window is ${windowMs} ms)`
        : `the message timestamp is in the future (${offsetMs} ms ahead; the window is ${windowMs} ms)`,
    );
  }
}

/**
 * UNAUTHENTICATED: the agent's and the coordinator's clocks are too far apart for signed
 * batches to pass the replay window. `skewMs` is the agent's clock minus the coordinator's.
 */
export class ClockSkewError extends BatonError {
  constructor(
    readonly skewMs: number,
    readonly windowMs: number,
    message: string,
  ) {
    super(Code.UNAUTHENTICATED, message);
  }
}

/** "360006 ms ahead of" / "120000 ms behind": an agent's skew against the coordinator, in words. */
export function describeSkew(skewMs: number): string {
  return skewMs >= 0 ? `${Math.round(skewMs)} ms ahead of` : `${Math.round(-skewMs)} ms behind`;
}

/** Options of createReplayGuard. */
export interface ReplayGuardOptions {
  /** How far a message's timestamp may be from now, either way, in ms. Default 5 min. */
  windowMs?: number;
  /** Message ids remembered at most; past it new messages get RESOURCE_EXHAUSTED. Default 1,000,000. */
  maxEntries?: number;
  /** The clock, in ms since the epoch. Default Date.now. */
  now?: () => number;
}

/** Refuses replayed messages: a timestamp window plus the ids seen within it. */
export interface ReplayGuard {
  /**
   * Accepts a message once, or throws: UNAUTHENTICATED for a timestamp outside the window
   * (a TimestampWindowError) or an id already seen, RESOURCE_EXHAUSTED when too many ids are remembered,
   * INVALID_ARGUMENT for an empty id or a timestamp that is not a number. Both arguments
   * must come from the verified payload, never from unsigned fields.
   */
  check(messageId: string, sentAtMs: number): void;
  /** A timestamp minus the guard's clock, ms: how far the sender's clock is ahead, less the transit time. */
  offsetOf(sentAtMs: number): number;
  /** How far a timestamp may be from now, either way, ms. */
  readonly windowMs: number;
  /** How many message ids are remembered now. */
  readonly size: number;
}

/**
 * A replay guard. A message id is remembered until its timestamp leaves the window
 * (sentAtMs + windowMs): after that the timestamp check alone refuses a replay, so memory
 * stays bounded by time. When maxEntries ids are still inside the window the guard
 * refuses new messages with RESOURCE_EXHAUSTED rather than evicting: forgetting an id
 * still inside the window would let its replay through.
 */
export function createReplayGuard(options: ReplayGuardOptions = {}): ReplayGuard {
  const windowMs = options.windowMs ?? DEFAULT_REPLAY_WINDOW_MS;
  const maxEntries = options.maxEntries ?? DEFAULT_REPLAY_MAX_ENTRIES;
  const now = options.now ?? Date.now;
  if (!(windowMs > 0) || !Number.isFinite(windowMs)) throw invalidArgument(`windowMs must be a positive number of ms, not ${windowMs}`);
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw invalidArgument(`maxEntries must be a positive integer, not ${maxEntries}`);
  const bucketMs = windowMs / BUCKETS_PER_WINDOW;

  const seen = new Set<string>();
  // Bucket index -> the ids whose expiry falls in it; a bucket is dropped once it has ended.
  const buckets = new Map<number, string[]>();
  let nextExpiryMs = Infinity;

  function expire(t: number): void {
    if (t < nextExpiryMs) return;
    nextExpiryMs = Infinity;
    for (const [index, ids] of buckets) {
      const endMs = (index + 1) * bucketMs;
      if (endMs <= t) {
        for (const id of ids) seen.delete(id);
        buckets.delete(index);
      } else if (endMs < nextExpiryMs) {
        nextExpiryMs = endMs;
      }
    }
  }

  return {
    check(messageId, sentAtMs) {
      if (typeof messageId !== "string" || messageId.length === 0) throw invalidArgument("a message id is required");
      if (!Number.isFinite(sentAtMs)) throw invalidArgument("the message timestamp is not a number");
      const t = now();
      if (Math.abs(sentAtMs - t) > windowMs) throw new TimestampWindowError(sentAtMs - t, windowMs);
      expire(t);
      if (seen.has(messageId)) throw unauthenticated("the message id was already seen (a replay)");
      if (seen.size >= maxEntries) throw resourceExhausted(`too many messages in the replay window (${maxEntries}); retry later`);
      seen.add(messageId);
      // One bucket of slack past sentAtMs + windowMs, so rounding can never drop an id early.
      const index = Math.floor((sentAtMs + windowMs) / bucketMs) + 1;
      const ids = buckets.get(index);
      if (ids) ids.push(messageId);
      else buckets.set(index, [messageId]);
      nextExpiryMs = Math.min(nextExpiryMs, (index + 1) * bucketMs);
    },
    offsetOf(sentAtMs) {
      return sentAtMs - now();
    },
    windowMs,
    get size() {
      return seen.size;
    },
  };
}
