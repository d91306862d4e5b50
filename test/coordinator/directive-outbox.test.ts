import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AckOutcome, CoordinationDirectiveSchema, DirectiveAckSchema, type CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import { backoffMs, DirectiveOutbox, type DeliveryPolicy } from "../../src/coordinator/directive-outbox.js";

const policy: DeliveryPolicy = { ackTimeoutMs: 100, retryCount: 3, backoffInitialMs: 10, backoffMaxMs: 80, leaseMs: 500, random: () => 0.5 };

function directive(id: number): CoordinationDirective {
  return create(CoordinationDirectiveSchema, { directiveId: `d${id}`, targetAgent: "a" });
}

function ack(d: { directiveId: string; attempt: number }, outcome: AckOutcome, extra: Record<string, unknown> = {}) {
  return create(DirectiveAckSchema, { directiveId: d.directiveId, attempt: d.attempt, outcome, sourceAgent: "a", ...extra });
}

describe("DirectiveOutbox", () => {
  it("retries an unacked directive with backoff, then gives up after retry_count resends", () => {
    const box = new DirectiveOutbox(policy, 10);
    box.add(directive(1), 0);
    let now = 0;
    const sends: number[] = [];
    for (let i = 0; i < 20 && box.has("d1"); i++) {
      for (const d of box.take(now)) sends.push(d.attempt);
      const due = box.nextDue();
      if (due === undefined) break;
      now = due;
      const gaveUp = box.expire(now);
      if (gaveUp.length) expect(gaveUp[0]).toMatchObject({ reason: "exhausted" });
    }
    expect(sends).toEqual([1, 2, 3, 4]);
    expect(box.has("d1")).toBe(false);
  });

  it("ignores an ack for an earlier attempt", () => {
    const box = new DirectiveOutbox(policy, 10);
    box.add(directive(1), 0);
    const [first] = box.take(0);
    const staleAttempt = first!.attempt;
    box.expire(100);
    box.take(1000);
    expect(box.ack(ack({ directiveId: "d1", attempt: staleAttempt }, AckOutcome.ACCEPTED), 1000)).toEqual({ kind: "stale" });
    expect(box.list()[0]!.state).toBe("sent");
    expect(box.ack(ack({ directiveId: "d1", attempt: staleAttempt + 1 }, AckOutcome.ACCEPTED), 1000).kind).toBe("accepted");
  });

  it("progress extends the lease of an accepted directive", () => {
    const box = new DirectiveOutbox(policy, 10);
    box.add(directive(1), 0);
    const [d] = box.take(0);
    box.ack(ack(d!, AckOutcome.ACCEPTED), 10);
    box.progress("d1", 400);
    expect(box.expire(600)).toEqual([]);
    expect(box.expire(901)).toMatchObject([{ reason: "lease_expired" }]);
  });

  it("a NAK hands the directive back with its delay", () => {
    const box = new DirectiveOutbox(policy, 10);
    box.add(directive(1), 0);
    const [d] = box.take(0);
    expect(box.ack(ack(d!, AckOutcome.NOT_NOW, { retryAfter: durationFromMs(250), reason: "busy" }), 5)).toMatchObject({ kind: "deferred", retryAfterMs: 250 });
    expect(box.has("d1")).toBe(false);
  });

  it("replays unacked directives in order after a disconnect, at no cost in retries", () => {
    const box = new DirectiveOutbox(policy, 10);
    for (let i = 1; i <= 3; i++) box.add(directive(i), 0);
    const sent = box.take(0);
    box.ack(ack(sent[1]!, AckOutcome.ACCEPTED), 1);
    box.disconnect();
    const replay = box.take(50);
    expect(replay.map((d) => [d.directiveId, d.sequence])).toEqual([["d1", 1n], ["d3", 3n]]);
    expect(replay.map((d) => d.attempt)).toEqual([2, 2]);
  });

  it("backoff grows exponentially up to its cap", () => {
    expect([1, 2, 3, 4, 5].map((r) => backoffMs({ ...policy, random: () => 1 }, r))).toEqual([10, 20, 40, 80, 80]);
    expect(backoffMs({ ...policy, random: () => 0 }, 3)).toBe(20);
  });
});

type Op =
  | { op: "add" }
  | { op: "take" }
  | { op: "ack"; pick: number; outcome: AckOutcome; stale: boolean }
  | { op: "progress"; pick: number }
  | { op: "advance"; ms: number }
  | { op: "disconnect" }
  | { op: "settle"; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.constant<Op>({ op: "add" }),
  fc.constant<Op>({ op: "take" }),
  fc.record({ op: fc.constant("ack" as const), pick: fc.nat(), outcome: fc.constantFrom(AckOutcome.ACCEPTED, AckOutcome.REJECTED, AckOutcome.NOT_NOW), stale: fc.boolean() }),
  fc.record({ op: fc.constant("progress" as const), pick: fc.nat() }),
  fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 1, max: 300 }) }),
  fc.constant<Op>({ op: "disconnect" }),
  fc.record({ op: fc.constant("settle" as const), pick: fc.nat() }),
);

describe("DirectiveOutbox, model-based", () => {
  it("never loses a directive, never exceeds the cap, never lets a stale ack settle, bounds retries", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.array(opArb, { maxLength: 120 }), (cap, ops) => {
        const box = new DirectiveOutbox(policy, cap);
        let now = 0;
        let added = 0;
        let removed = 0;
        let lastSequence = 0n;
        const onStream = new Map<string, number>(); // directive -> attempt last written
        for (const o of ops) {
          const held = box.list();
          switch (o.op) {
            case "add":
              box.add(directive(++added), now);
              expect(box.list().at(-1)!.directive.sequence).toBeGreaterThan(lastSequence);
              lastSequence = box.list().at(-1)!.directive.sequence;
              break;
            case "take": {
              const out = box.take(now);
              for (let i = 1; i < out.length; i++) expect(out[i]!.sequence).toBeGreaterThan(out[i - 1]!.sequence);
              for (const d of out) {
                const prev = onStream.get(d.directiveId);
                if (prev !== undefined) expect(d.attempt).toBe(prev + 1);
                onStream.set(d.directiveId, d.attempt);
              }
              break;
            }
            case "ack": {
              const sent = held.filter((h) => h.state === "sent");
              if (!sent.length) break;
              const target = sent[o.pick % sent.length]!.directive;
              const before = JSON.stringify(box.list().map((h) => [h.directive.directiveId, h.state]));
              const res = box.ack(ack({ directiveId: target.directiveId, attempt: o.stale ? target.attempt - 1 : target.attempt }, o.outcome), now);
              if (o.stale) {
                expect(res.kind).toBe("stale");
                expect(JSON.stringify(box.list().map((h) => [h.directive.directiveId, h.state]))).toBe(before);
              } else {
                if (res.kind === "rejected" || res.kind === "deferred") removed++;
              }
              break;
            }
            case "progress":
              if (held.length) box.progress(held[o.pick % held.length]!.directive.directiveId, now);
              break;
            case "advance":
              now += o.ms;
              for (const g of box.expire(now)) {
                removed++;
                // Given up for lack of acks only after the first send and retry_count resends.
                if (g.reason === "exhausted") expect(g.directive.attempt).toBeGreaterThanOrEqual(policy.retryCount + 1);
              }
              break;
            case "disconnect":
              box.disconnect();
              break;
            case "settle":
              if (held.length && box.settle(held[o.pick % held.length]!.directive.directiveId)) removed++;
              break;
          }
          // Conservation: everything added is held or was given back exactly once.
          expect(box.list().length + removed).toBe(added);
          expect(box.inFlight).toBeLessThanOrEqual(cap);
          expect(box.list().filter((h) => h.state !== "queued").length).toBeLessThanOrEqual(cap);
        }
      }),
      { numRuns: 300 },
    );
  });
});
