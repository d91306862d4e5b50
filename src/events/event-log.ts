import type { Event } from "../../gen/baton/v1/control_pb.js";
import { BatonError, Code, invalidArgument, quote } from "../errors.js";
import { createAsyncQueue, type AsyncQueue } from "../streams/index.js";
import { timestampAt } from "../rpc/index.js";
import { TopicIndex } from "./topic-index.js";
import { isValidPattern } from "./topic-pattern.js";

/** What an event carries besides its cursor and time. */
export type EventInit = Pick<Event, "topic" | "correlationId" | "kind" | "reason">;

/** The bounds on what one WatchEvents call may ask for (README, Limits). */
export const WATCH_LIMITS = {
  /** Topic patterns in one call. */
  maxPatterns: 256,
  /** UTF-8 bytes of one pattern: room for any topic (an id of 128 dots escapes to 384 bytes). */
  maxPatternBytes: 512,
  /** Segments of one pattern; topics have 3. */
  maxPatternSegments: 32,
} as const;

/** Options of the event log. */
export interface EventLogOptions {
  /** Events kept for watchers resuming from a cursor. Default 10000. */
  retain?: number;
  /** Events queued for one watcher before it is cut off as too slow. Default 1000. */
  watcherCapacity?: number;
  /** Topic patterns one watcher may give. Default 256. */
  maxPatterns?: number;
  /** UTF-8 bytes of one topic pattern. Default 512. */
  maxPatternBytes?: number;
  /** Segments of one topic pattern. Default 32. */
  maxPatternSegments?: number;
}

interface Watcher {
  /** Distinct patterns; "#" for a watcher that gave none. */
  patterns: string[];
  queue: AsyncQueue<Event>;
}

function positive(name: keyof EventLogOptions, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`EventLog: ${name} must be a positive integer, got ${v}`);
  return v;
}

/**
 * The fanout of every state change (the replacement for the spec's `status` exchange):
 * each event gets a monotonic cursor; watchers filter by topic pattern, resume after a
 * cursor from what is retained, and are ended with RESOURCE_EXHAUSTED when they fall
 * too far behind rather than buffered without bound. Patterns are bounded and routed
 * through one shared trie, and nothing a watcher did can make append() throw: it runs
 * inside the coordinator's emit, so a throw would fail a SubmitTask that took effect.
 */
export class EventLog {
  private readonly retained: Event[] = [];
  /** Where the retained events start in `retained`: the prefix before it is dropped in one go once as long as the rest, so an append costs O(1), not a shift of every retained event. */
  private start = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly index = new TopicIndex<Watcher>();
  private cursor = 0n;
  private readonly retain: number;
  private readonly capacity: number;
  private readonly limits: { maxPatterns: number; maxPatternBytes: number; maxPatternSegments: number };

  constructor(options: EventLogOptions = {}) {
    this.retain = positive("retain", options.retain, 10_000);
    this.capacity = positive("watcherCapacity", options.watcherCapacity, 1000);
    this.limits = {
      maxPatterns: positive("maxPatterns", options.maxPatterns, WATCH_LIMITS.maxPatterns),
      maxPatternBytes: positive("maxPatternBytes", options.maxPatternBytes, WATCH_LIMITS.maxPatternBytes),
      maxPatternSegments: positive("maxPatternSegments", options.maxPatternSegments, WATCH_LIMITS.maxPatternSegments),
    };
  }

  /** The latest cursor. */
  get last(): bigint {
    return this.cursor;
  }

  /** Records an event and hands it to every matching watcher; never throws for a watcher's sake. */
  append(init: EventInit): Event {
    // A literal, as create() would make it (the kind's message is taken as it is there too): every state change appends one.
    const event: Event = { $typeName: "baton.v1.Event", cursor: ++this.cursor, topic: init.topic, timestamp: timestampAt(Date.now()), correlationId: init.correlationId, kind: init.kind, reason: init.reason };
    this.retained.push(event);
    if (this.retained.length - this.start > this.retain) this.start = this.retained.length - this.retain;
    if (this.start >= this.retain) {
      this.retained.splice(0, this.start);
      this.start = 0;
    }
    let targets: Iterable<Watcher>;
    try {
      targets = this.index.match(event.topic);
    } catch (err) {
      // Not expected; if routing fails, the watchers end (they resume from their cursor) and the caller carries on.
      for (const w of [...this.watchers]) this.end(w, err);
      return event;
    }
    for (const w of targets) {
      try {
        // false: the queue is closed (cut off as too slow); stop routing to it.
        if (!w.queue.push(event)) this.unregister(w);
      } catch (err) {
        this.end(w, err);
      }
    }
    return event;
  }

  /** A watcher's stream: retained events after `afterCursor` (0: none), then live ones, until `signal` aborts. */
  watch(patterns: string[], afterCursor: bigint, signal: AbortSignal): AsyncIterable<Event> {
    this.check(patterns);
    if (afterCursor > this.cursor) throw invalidArgument(`after_cursor ${afterCursor} is ahead of the latest event ${this.cursor}`);
    const oldest = this.retained[this.start]?.cursor ?? this.cursor + 1n;
    if (afterCursor > 0n && afterCursor + 1n < oldest) {
      throw new BatonError(Code.OUT_OF_RANGE, `events after cursor ${afterCursor} are no longer retained (oldest is ${oldest}); resume from 0 and re-read state`);
    }
    const watcher: Watcher = { patterns: patterns.length ? [...new Set(patterns)] : ["#"], queue: createAsyncQueue<Event>({ capacity: this.capacity, overflow: "error", name: "event watcher" }) };
    if (afterCursor > 0n) {
      // The replay goes through a trie of this watcher's own patterns: up to `retain` events, each at the cost of its depth.
      const own = new TopicIndex<true>();
      for (const p of watcher.patterns) own.add(p, true);
      for (let i = this.start; i < this.retained.length; i++) {
        const e = this.retained[i]!;
        if (e.cursor > afterCursor && own.match(e.topic).length > 0) watcher.queue.push(e);
      }
    }
    this.watchers.add(watcher);
    for (const p of watcher.patterns) this.index.add(p, watcher);
    const stop = () => this.end(watcher);
    signal.addEventListener("abort", stop, { once: true });
    const unregister = () => this.unregister(watcher);
    return {
      async *[Symbol.asyncIterator]() {
        try {
          yield* watcher.queue;
        } finally {
          unregister();
          signal.removeEventListener("abort", stop);
        }
      },
    };
  }

  /** Ends every watcher (shutdown). */
  close(): void {
    for (const w of [...this.watchers]) this.end(w);
  }

  /** Refuses, with INVALID_ARGUMENT naming the limit, what a WatchEvents call may not ask for. */
  private check(patterns: string[]): void {
    const { maxPatterns, maxPatternBytes, maxPatternSegments } = this.limits;
    if (patterns.length > maxPatterns) throw invalidArgument(`topics has ${patterns.length} patterns; at most ${maxPatterns} are allowed in one call`);
    for (const [i, p] of patterns.entries()) {
      const shown = quote(p);
      const bytes = Buffer.byteLength(p);
      if (bytes > maxPatternBytes) throw invalidArgument(`topics[${i}] ${shown} is ${bytes} bytes; a pattern may be at most ${maxPatternBytes} bytes`);
      const segments = p.split(".").length;
      if (segments > maxPatternSegments) throw invalidArgument(`topics[${i}] ${shown} has ${segments} segments; a pattern may have at most ${maxPatternSegments} segments`);
      if (!isValidPattern(p)) throw invalidArgument(`topics[${i}] ${shown} must be dot-separated segments of letters, digits, _, - and the escapes %2E (.) and %25 (%), or * or #`);
    }
  }

  private unregister(w: Watcher): void {
    if (!this.watchers.delete(w)) return;
    for (const p of w.patterns) this.index.remove(p, w);
  }

  private end(w: Watcher, error?: unknown): void {
    this.unregister(w);
    w.queue.close(error);
  }
}
