import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { EventSchema, type Event } from "../../gen/baton/v1/control_pb.js";
import { BatonError, Code, invalidArgument } from "../errors.js";
import { createAsyncQueue, type AsyncQueue } from "../streams/index.js";
import { isValidPattern, topicMatches } from "./topic-pattern.js";

/** What an event carries besides its cursor and time. */
export type EventInit = Pick<Event, "topic" | "correlationId" | "kind" | "reason">;

/** Options of the event log. */
export interface EventLogOptions {
  /** Events kept for watchers resuming from a cursor. Default 10000. */
  retain?: number;
  /** Events queued for one watcher before it is cut off as too slow. Default 1000. */
  watcherCapacity?: number;
}

interface Watcher {
  patterns: string[];
  queue: AsyncQueue<Event>;
}

/**
 * The fanout of every state change (the replacement for the spec's `status` exchange):
 * each event gets a monotonic cursor; watchers filter by topic pattern, resume after a
 * cursor from what is retained, and are ended with RESOURCE_EXHAUSTED when they fall
 * too far behind rather than buffered without bound.
 */
export class EventLog {
  private readonly retained: Event[] = [];
  private readonly watchers = new Set<Watcher>();
  private cursor = 0n;
  private readonly retain: number;
  private readonly capacity: number;

  constructor(options: EventLogOptions = {}) {
    this.retain = options.retain ?? 10_000;
    this.capacity = options.watcherCapacity ?? 1000;
  }

  /** The latest cursor. */
  get last(): bigint {
    return this.cursor;
  }

  /** Records an event and hands it to every matching watcher. */
  append(init: EventInit): Event {
    const event = create(EventSchema, { ...init, cursor: ++this.cursor, timestamp: timestampNow() });
    this.retained.push(event);
    if (this.retained.length > this.retain) this.retained.splice(0, this.retained.length - this.retain);
    for (const w of this.watchers) if (this.wants(w.patterns, event)) w.queue.push(event);
    return event;
  }

  private wants(patterns: string[], event: Event): boolean {
    return patterns.length === 0 || patterns.some((p) => topicMatches(p, event.topic));
  }

  /** A watcher's stream: retained events after `afterCursor` (0: none), then live ones, until `signal` aborts. */
  watch(patterns: string[], afterCursor: bigint, signal: AbortSignal): AsyncIterable<Event> {
    for (const p of patterns) if (!isValidPattern(p)) throw invalidArgument(`topic pattern ${JSON.stringify(p)} must be dot-separated segments of letters, digits, _ or -, or * or #`);
    if (afterCursor > this.cursor) throw invalidArgument(`after_cursor ${afterCursor} is ahead of the latest event ${this.cursor}`);
    const oldest = this.retained[0]?.cursor ?? this.cursor + 1n;
    if (afterCursor > 0n && afterCursor + 1n < oldest) {
      throw new BatonError(Code.OUT_OF_RANGE, `events after cursor ${afterCursor} are no longer retained (oldest is ${oldest}); resume from 0 and re-read state`);
    }
    const queue = createAsyncQueue<Event>({ capacity: this.capacity, overflow: "error", name: "event watcher" });
    if (afterCursor > 0n) for (const e of this.retained) if (e.cursor > afterCursor && this.wants(patterns, e)) queue.push(e);
    const watcher: Watcher = { patterns, queue };
    this.watchers.add(watcher);
    const stop = () => {
      this.watchers.delete(watcher);
      queue.close();
    };
    signal.addEventListener("abort", stop, { once: true });
    const watchers = this.watchers;
    return {
      async *[Symbol.asyncIterator]() {
        try {
          yield* queue;
        } finally {
          watchers.delete(watcher);
          signal.removeEventListener("abort", stop);
        }
      },
    };
  }

  /** Ends every watcher (shutdown). */
  close(): void {
    for (const w of this.watchers) w.queue.close();
    this.watchers.clear();
  }
}
