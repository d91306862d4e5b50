import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Code } from "../../src/errors.js";
import { ResourceInventory } from "../../src/resources/index.js";

const RESOURCES = [
  { id: "cpu-0", kind: "cpu", capacity: 2, agent: "a1" },
  { id: "cpu-1", kind: "cpu", capacity: 1, agent: "a2" },
  { id: "gpu-0", kind: "gpu", capacity: 0, agent: "a2" },
  { id: "mem-0", kind: "mem", capacity: 8, agent: "a1" },
];

type Op =
  | { op: "reserve"; id: number; requests: Array<{ pick: number; byKind: boolean; amount: number }>; stale: boolean }
  | { op: "release"; id: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant("reserve" as const),
    id: fc.integer({ min: 0, max: 8 }),
    requests: fc.array(fc.record({ pick: fc.nat(), byKind: fc.boolean(), amount: fc.constantFrom(0, 0.5, 1, 2, 3) }), { minLength: 1, maxLength: 3 }),
    stale: fc.boolean(),
  }),
  fc.record({ op: fc.constant("release" as const), id: fc.integer({ min: 0, max: 8 }) }),
);

describe("reservations, property-based", () => {
  it("never over-commit, are all or nothing, idempotent, and released exactly", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const inv = new ResourceInventory();
        for (const agent of ["a1", "a2"]) inv.register(agent, RESOURCES.filter((r) => r.agent === agent).map((r) => ({ $typeName: "baton.v1.Resource" as const, resourceId: r.id, kind: r.kind, capacity: r.capacity, attributes: {} })));
        // The model: what each live reservation holds.
        const model = new Map<string, Map<string, number>>();
        const cap = (id: string) => RESOURCES.find((r) => r.id === id)!.capacity || 1;
        for (const o of ops) {
          const rid = `r${o.id}`;
          if (o.op === "release") {
            expect(inv.release(rid)).toBe(model.delete(rid));
          } else {
            const before = RESOURCES.map((r) => inv.available(r.id));
            const versions = Object.fromEntries(inv.query().map((s) => [s.resource!.resourceId, s.version - (o.stale ? 1n : 0n)]));
            const requests = o.requests.map((q) => {
              const r = RESOURCES[q.pick % RESOURCES.length]!;
              return { $typeName: "baton.v1.ResourceRequest" as const, resourceId: q.byKind ? "" : r.id, kind: q.byKind ? r.kind : "", amount: q.amount };
            });
            try {
              const got = inv.reserve({ reservationId: rid, holder: "t", requests, expectedVersions: o.stale ? versions : {} });
              if (!model.has(rid)) {
                expect(o.stale).toBe(false);
                const held = new Map<string, number>();
                for (const g of got) held.set(g.resourceId, (held.get(g.resourceId) ?? 0) + g.amount);
                model.set(rid, held);
              }
            } catch (err) {
              expect((err as { code: number }).code).toBe(Code.ABORTED);
              // All or nothing: a refused reservation changed nothing.
              expect(RESOURCES.map((r) => inv.available(r.id))).toEqual(before);
            }
          }
          // Never over-committed, and exactly what the live reservations hold.
          for (const r of RESOURCES) {
            let held = 0;
            for (const m of model.values()) held += m.get(r.id) ?? 0;
            expect(inv.available(r.id)).toBeGreaterThanOrEqual(-1e-9);
            expect(inv.available(r.id)).toBeCloseTo(cap(r.id) - held, 9);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
