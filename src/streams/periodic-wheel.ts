/** Stops one member's periodic calls; calling it again does nothing. */
export type Leave = () => void;

/** How finely a wheel divides its period: at most this many wake-ups a period, whatever the number of members. */
const SLOTS = 50;
/** Its finest slot, ms: a short period (tests, the demo) needs no more wake-ups than this allows. */
const MIN_SLOT_MS = 10;

/**
 * Calls each member's function once a period, from one timer for all of them. Thousands of
 * idle agent sessions each ran a setInterval of their own: each fired on its own wake-up
 * of the process, and a wake-up for one heartbeat costs far more than the heartbeat (the
 * loop, the timer list, caches gone cold). Here a member sits in one of SLOTS slots, the
 * one that comes round a whole period after it joined, and one tick runs a slot's members
 * together, so the process wakes SLOTS times a period rather than once per member. A tick
 * runs one slot, or every slot that came due while the loop was busy. A member is first
 * called one period after it joins, give or take a slot, then every period; its function
 * must not throw.
 */
export class PeriodicWheel {
  private readonly slotMs: number;
  private readonly slots: Array<Set<() => void>>;
  private current = 0;
  private members = 0;
  private timer: NodeJS.Timeout | undefined;
  /** When the current slot is due, by `now`. */
  private dueAt = 0;

  /** `now` is a monotonic clock in ms (tests give their own). */
  constructor(
    readonly periodMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(periodMs > 0)) throw new RangeError(`a wheel's period must be a positive number of ms, not ${periodMs}`);
    const count = Math.max(1, Math.min(SLOTS, Math.floor(periodMs / MIN_SLOT_MS)));
    this.slotMs = periodMs / count;
    this.slots = Array.from({ length: count }, () => new Set());
  }

  /** Calls `fn` once a period until the returned function is called. */
  join(fn: () => void): Leave {
    // The slot that has just run comes round again last: a whole period from now.
    const slot = this.slots[this.current === 0 ? this.slots.length - 1 : this.current - 1]!;
    // A wrapper of its own, so the same function may join twice and leave once.
    const member = () => fn();
    slot.add(member);
    if (++this.members === 1) this.start();
    let joined = true;
    return () => {
      if (!joined) return;
      joined = false;
      slot.delete(member);
      if (--this.members === 0) this.stop();
    };
  }

  private start(): void {
    this.dueAt = this.now() + this.slotMs;
    this.timer = setInterval(() => this.tick(), this.slotMs);
    // As each session's own interval was: the wheel never keeps a process alive.
    this.timer.unref();
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    // A busy event loop runs an interval's callback once, however many intervals late it is.
    // One slot per call would then let the wheel go round slower than its period, and under
    // load members would pass their heartbeat limit. So every slot that has come due runs,
    // each once at most: a lag of a whole period or more runs the round once, then afresh.
    const now = this.now();
    const late = Math.floor((now - this.dueAt) / this.slotMs) + 1;
    const due = Math.max(1, Math.min(this.slots.length, late));
    this.dueAt = late > this.slots.length ? now + this.slotMs : this.dueAt + due * this.slotMs;
    for (let i = 0; i < due; i++) this.runSlot();
  }

  private runSlot(): void {
    const slot = this.slots[this.current]!;
    this.current = (this.current + 1) % this.slots.length;
    // Over a copy, so a member joining now (into this slot, a period away) is not called at
    // once; one that left while the slot ran is skipped.
    for (const member of [...slot]) if (slot.has(member)) member();
  }
}
