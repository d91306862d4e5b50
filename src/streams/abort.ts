/** Options of delay. */
export interface DelayOptions {
  /**
   * Keep the process alive while waiting (default false: the timer is unref()ed, for waits
   * in a server whose listening socket keeps it alive anyway). Set it when the wait is the
   * process's only work, such as an agent waiting to reconnect to its coordinator.
   */
  keepAlive?: boolean;
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first; the timer is unref()ed unless `keepAlive`. */
export function delay(ms: number, signal?: AbortSignal, options: DelayOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    if (!options.keepAlive) timer.unref();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
