import { durationMs } from "@bufbuild/protobuf/wkt";
import { AckOutcome, type CoordinationDirective, type DirectiveAck } from "../../gen/baton/v1/coordination_pb.js";

/** How directives are retried (the spec: retry_count 3, retry_delay exponential). */
export interface DeliveryPolicy {
  /** How long a sent directive waits for its ack before it is resent, ms. */
  ackTimeoutMs: number;
  /** Resends after the first send before the agent is given up on. */
  retryCount: number;
  /** Delay before the first resend, ms; doubled each time, with jitter. */
  backoffInitialMs: number;
  /** Upper bound on one delay, ms. */
  backoffMaxMs: number;
  /** How long an accepted directive may run without progress or completion, ms. */
  leaseMs: number;
  /** 0..1, Math.random by default; injected so tests are deterministic. */
  random?: () => number;
}

/** Where one directive stands in its agent's outbox. */
export type OutboxState = "queued" | "sent" | "accepted";

interface Entry {
  directive: CoordinationDirective;
  state: OutboxState;
  /** Earliest time a queued entry may be (re)sent. */
  sendAt: number;
  /** Ack deadline (sent) or lease expiry (accepted). */
  deadline: number;
  /** Resends caused by ack timeouts. */
  retries: number;
  /** Whether it was ever written to a stream (it then holds a slot of the in-flight cap). */
  everSent: boolean;
}

/** Why the outbox gave a directive up. */
export type GiveUp = { reason: "exhausted" | "lease_expired"; directive: CoordinationDirective };

/** What an ack did. */
export type AckResult =
  | { kind: "accepted"; directive: CoordinationDirective }
  | { kind: "rejected"; directive: CoordinationDirective; reason: string }
  | { kind: "deferred"; directive: CoordinationDirective; retryAfterMs: number; reason: string }
  | { kind: "stale" }
  | { kind: "unknown" };

/** Exponential backoff with equal jitter: half fixed, half random, so retries spread out. */
export function backoffMs(policy: DeliveryPolicy, retry: number): number {
  const base = Math.min(policy.backoffMaxMs, policy.backoffInitialMs * 2 ** Math.max(0, retry - 1));
  const random = policy.random ?? Math.random;
  return Math.round(base / 2 + (base / 2) * random());
}

/**
 * One agent's directives and their delivery: per-session sequence numbers, the agent's
 * in-flight cap, ack timeouts with bounded exponential retries, leases that progress
 * extends, and replay in order on resume. Pure bookkeeping: time comes in as `now`,
 * and the caller writes what `take` returns to the stream.
 */
export class DirectiveOutbox {
  private readonly entries = new Map<string, Entry>();
  private nextSeq: bigint;

  constructor(
    private readonly policy: DeliveryPolicy,
    public maxInFlight: number,
    firstSequence = 1n,
  ) {
    this.nextSeq = firstSequence;
  }

  /** The next sequence number this outbox will assign. */
  get nextSequence(): bigint {
    return this.nextSeq;
  }

  /** Directives holding a slot of the in-flight cap. */
  get inFlight(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.everSent) n++;
    return n;
  }

  /** How many directives it holds (without listing them). */
  get size(): number {
    return this.entries.size;
  }

  /** Every directive held, in sequence order. */
  list(): Array<{ directive: CoordinationDirective; state: OutboxState }> {
    return this.sorted().map((e) => ({ directive: e.directive, state: e.state }));
  }

  /** Whether the outbox holds the directive. */
  has(directiveId: string): boolean {
    return this.entries.has(directiveId);
  }

  /**
   * Adds a directive: stamps its sequence (and attempt 1); it waits for a slot. A `held`
   * one is not written until release(): its journal record must be durable first, and
   * any pump of the agent (a report from it, a timer) could otherwise send it.
   */
  add(directive: CoordinationDirective, now: number, options: { held?: boolean } = {}): void {
    directive.sequence = this.nextSeq++;
    directive.attempt = 1;
    this.entries.set(directive.directiveId, { directive, state: "queued", sendAt: options.held ? Number.POSITIVE_INFINITY : now, deadline: Number.POSITIVE_INFINITY, retries: 0, everSent: false });
  }

  /** Lets a held directive go (its record is durable); false when it is no longer here. */
  release(directiveId: string, now: number): boolean {
    const e = this.entries.get(directiveId);
    if (!e || e.everSent || e.sendAt !== Number.POSITIVE_INFINITY) return false;
    e.sendAt = now;
    return true;
  }

  /** Puts back a directive recovered from the journal, as it was. */
  restore(directive: CoordinationDirective, state: OutboxState, now: number): void {
    if (directive.sequence >= this.nextSeq) this.nextSeq = directive.sequence + 1n;
    // After a restart nothing is known to be on a stream: sent ones are resent; accepted ones keep running under a fresh lease.
    const accepted = state === "accepted";
    this.entries.set(directive.directiveId, {
      directive,
      state: accepted ? "accepted" : "queued",
      sendAt: now,
      deadline: accepted ? now + this.policy.leaseMs : Number.POSITIVE_INFINITY,
      retries: 0,
      everSent: state !== "queued",
    });
  }

  /**
   * The directives to write now, in sequence order: queued ones whose delay has passed,
   * while the in-flight cap allows. Each is marked sent, with its ack deadline; a
   * resend carries the next attempt number.
   */
  take(now: number): CoordinationDirective[] {
    const out: CoordinationDirective[] = [];
    let inFlight = this.inFlight;
    for (const e of this.sorted()) {
      if (e.state !== "queued" || e.sendAt > now) continue;
      if (!e.everSent) {
        if (inFlight >= this.maxInFlight) continue;
        inFlight++;
      } else {
        e.directive.attempt += 1;
      }
      e.everSent = true;
      e.state = "sent";
      e.deadline = now + this.policy.ackTimeoutMs;
      out.push(e.directive);
    }
    return out;
  }

  /** Applies an ack; one for another attempt than the latest send is stale and changes nothing. */
  ack(ack: DirectiveAck, now: number): AckResult {
    const e = this.entries.get(ack.directiveId);
    if (!e) return { kind: "unknown" };
    if (ack.attempt !== e.directive.attempt || e.state !== "sent") {
      // An accepted directive may be acked again (a duplicate after resume): harmless.
      return e.state === "accepted" && ack.outcome === AckOutcome.ACCEPTED && ack.attempt === e.directive.attempt ? { kind: "accepted", directive: e.directive } : { kind: "stale" };
    }
    switch (ack.outcome) {
      case AckOutcome.ACCEPTED:
        e.state = "accepted";
        e.deadline = now + this.policy.leaseMs;
        return { kind: "accepted", directive: e.directive };
      case AckOutcome.REJECTED:
        this.entries.delete(ack.directiveId);
        return { kind: "rejected", directive: e.directive, reason: ack.reason };
      case AckOutcome.NOT_NOW:
        this.entries.delete(ack.directiveId);
        return { kind: "deferred", directive: e.directive, retryAfterMs: ack.retryAfter ? durationMs(ack.retryAfter) : 0, reason: ack.reason };
      default:
        return { kind: "stale" };
    }
  }

  /** Progress extends an accepted directive's lease; false when the outbox does not hold it. */
  progress(directiveId: string, now: number): boolean {
    const e = this.entries.get(directiveId);
    if (!e) return false;
    if (e.state === "accepted") e.deadline = now + this.policy.leaseMs;
    return true;
  }

  /** Removes a directive (completed, cancelled, handed back); returns it if it was held. */
  settle(directiveId: string): CoordinationDirective | undefined {
    const e = this.entries.get(directiveId);
    this.entries.delete(directiveId);
    return e?.directive;
  }

  /**
   * Handles deadlines: a sent directive whose ack is late is queued for a resend after a
   * backoff, until its retries are spent; an accepted one whose lease ran out is given up.
   */
  expire(now: number): GiveUp[] {
    const out: GiveUp[] = [];
    for (const e of this.sorted()) {
      if (e.deadline > now) continue;
      if (e.state === "sent") {
        if (e.retries >= this.policy.retryCount) {
          this.entries.delete(e.directive.directiveId);
          out.push({ reason: "exhausted", directive: e.directive });
        } else {
          e.retries++;
          e.state = "queued";
          e.sendAt = now + backoffMs(this.policy, e.retries);
          e.deadline = Number.POSITIVE_INFINITY;
        }
      } else if (e.state === "accepted") {
        this.entries.delete(e.directive.directiveId);
        out.push({ reason: "lease_expired", directive: e.directive });
      }
    }
    return out;
  }

  /**
   * The stream is gone: unacked directives wait to be replayed, in order, when the agent
   * resumes. Their ack clocks stop (a disconnected agent cannot ack), and the replay costs
   * no retry. Accepted ones keep running on the agent under their lease.
   */
  disconnect(): void {
    for (const e of this.entries.values()) {
      if (e.state === "sent") {
        e.state = "queued";
        e.sendAt = 0;
        e.deadline = Number.POSITIVE_INFINITY;
      }
    }
  }

  /** Takes every directive out (the agent is lost): the caller hands them back for replanning. */
  drainAll(): Array<{ directive: CoordinationDirective; state: OutboxState }> {
    const all = this.list();
    this.entries.clear();
    return all;
  }

  /** The earliest time something is due (a send or a deadline), if anything is. */
  nextDue(): number | undefined {
    let due = Number.POSITIVE_INFINITY;
    for (const e of this.entries.values()) {
      if (e.state === "queued") due = Math.min(due, e.sendAt);
      else due = Math.min(due, e.deadline);
    }
    return Number.isFinite(due) ? due : undefined;
  }

  private sorted(): Entry[] {
    return [...this.entries.values()].sort((a, b) => (a.directive.sequence < b.directive.sequence ? -1 : a.directive.sequence > b.directive.sequence ? 1 : 0));
  }
}
