import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CoordinationState as S } from "../../gen/baton/v1/control_pb.js";
import { canTransition, nextState, TRANSITIONS, type RoundTrigger } from "../../src/coordinator/round-state.js";
import { Code } from "../../src/errors.js";

const TRIGGERS: RoundTrigger[] = ["system_state_change", "plan_ready", "coordination_failure", "execution_started", "completion", "adjustment_needed", "recovery_complete", "retry_coordination"];
const STATES = [S.IDLE, S.COORDINATING, S.EXECUTING, S.MONITORING, S.ERROR];

// The spec's table, written out independently of the implementation.
const SPEC: Array<[S, RoundTrigger, S]> = [
  [S.IDLE, "system_state_change", S.COORDINATING],
  [S.COORDINATING, "plan_ready", S.EXECUTING],
  [S.COORDINATING, "coordination_failure", S.ERROR],
  [S.EXECUTING, "execution_started", S.MONITORING],
  [S.MONITORING, "completion", S.IDLE],
  [S.MONITORING, "adjustment_needed", S.COORDINATING],
  [S.ERROR, "recovery_complete", S.IDLE],
  [S.ERROR, "retry_coordination", S.COORDINATING],
];

describe("the protocol state machine", () => {
  it.each(SPEC)("%s --%s--> %s", (from, trigger, to) => {
    expect(nextState(from, trigger)).toBe(to);
  });

  it("has exactly the spec's eight transitions", () => {
    const all = [...TRANSITIONS].flatMap(([from, m]) => [...m].map(([t, to]) => [from, t, to]));
    expect(all.sort()).toEqual([...SPEC].sort());
  });

  it("refuses every other transition, under random event sequences", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...TRIGGERS), { maxLength: 60 }), (triggers) => {
        let state = S.IDLE;
        for (const trigger of triggers) {
          const allowed = SPEC.find(([f, t]) => f === state && t === trigger);
          expect(canTransition(state, trigger)).toBe(allowed !== undefined);
          if (allowed) state = nextState(state, trigger);
          else expect(() => nextState(state, trigger)).toThrow(expect.objectContaining({ code: Code.FAILED_PRECONDITION }));
          expect(STATES).toContain(state);
        }
      }),
      { numRuns: 500 },
    );
  });
});
