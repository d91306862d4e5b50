import { resourceExhausted } from "../errors.js";

/** What a full queue does with one more item, decided up front. */
export type Overflow = "error" | "drop-oldest";

/** A bounded push queue read as an async iterable. */
export interface AsyncQueue<T> extends AsyncIterable<T> {
  /** Adds an item; false when the queue is closed. Throws (or drops) on overflow per `overflow`. */
  push(item: T): boolean;
  /** Takes every item queued now, up to `max`, without waiting. */
  drain(max?: number): T[];
  /** Resolves when an item is queued or the queue closes. */
  wait(signal?: AbortSignal): Promise<void>;
  /** Ends iteration after what is queued; with an error, iteration throws it instead. */
  close(error?: unknown): void;
  /** Items waiting. */
  readonly size: number;
  /** Whether close() was called. */
  readonly closed: boolean;
}

/** Options of createAsyncQueue. */
export interface AsyncQueueOptions {
  /** Most items held; a push past it overflows. */
  capacity: number;
  /** "error" closes the queue with RESOURCE_EXHAUSTED; "drop-oldest" discards the oldest item. */
  overflow: Overflow;
  /** Names the queue in the overflow error. */
  name?: string;
}

/** A bounded queue turned into an async iterable (one reader). */
export function createAsyncQueue<T>(options: AsyncQueueOptions): AsyncQueue<T> {
  const items: T[] = [];
  let head = 0;
  let closed = false;
  let failure: unknown;
  let wakeup: (() => void) | undefined;
  const wake = () => {
    const w = wakeup;
    wakeup = undefined;
    w?.();
  };
  const size = () => items.length - head;
  const compact = () => {
    // Emptied, the array starts over. Otherwise an amortized O(1) shift: copy down once half the array is consumed.
    if (head === items.length) {
      items.length = 0;
      head = 0;
    } else if (head > 1024 && head * 2 > items.length) {
      items.splice(0, head);
      head = 0;
    }
  };
  const queue: AsyncQueue<T> = {
    push(item) {
      if (closed) return false;
      if (size() >= options.capacity) {
        if (options.overflow === "drop-oldest") {
          items[head] = undefined as T;
          head++;
          compact();
        } else {
          queue.close(resourceExhausted(`${options.name ?? "queue"} is full (${options.capacity} items): the reader is too slow`));
          return false;
        }
      }
      items.push(item);
      wake();
      return true;
    },
    drain(max = Number.POSITIVE_INFINITY) {
      const n = Math.min(max, size());
      const out = items.slice(head, head + n);
      // What was taken must not stay reachable from here: a quiet session's outbox drains a heartbeat every few seconds and never reaches a compaction.
      items.fill(undefined as T, head, head + n);
      head += n;
      compact();
      return out;
    },
    wait(signal) {
      if (size() > 0 || closed) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        const onAbort = () => {
          wakeup = undefined;
          reject(signal!.reason);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        wakeup = () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
      });
    },
    close(error) {
      if (closed) return;
      closed = true;
      failure = error;
      wake();
    },
    get size() {
      return size();
    },
    get closed() {
      return closed;
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (failure !== undefined) throw failure;
        if (size() > 0) {
          const item = items[head] as T;
          items[head] = undefined as T;
          head++;
          compact();
          yield item;
          continue;
        }
        if (closed) return;
        await queue.wait();
      }
    },
  };
  return queue;
}
