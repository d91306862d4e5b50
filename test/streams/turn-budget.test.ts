import { describe, expect, it } from "vitest";
import { withinTurn } from "../../src/streams/index.js";

// The coordinator's readers of agent streams share one budget per turn of the event loop.

const spin = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};
const nextTurn = () => new Promise((r) => setImmediate(r));

describe("turn budget", () => {
  it("lets readers go on within the budget, makes them wait for the next turn past it, and starts afresh there", async () => {
    await nextTurn();
    expect(withinTurn(20)).toBeUndefined();
    expect(withinTurn(20)).toBeUndefined();
    spin(25);
    const wait = withinTurn(20);
    expect(wait).toBeInstanceOf(Promise);
    expect(withinTurn(20)).toBeInstanceOf(Promise);
    await wait;
    // The loop has turned: a new budget.
    expect(withinTurn(20)).toBeUndefined();
  });

  it("counts the whole turn, whichever reader spent it", async () => {
    await nextTurn();
    expect(withinTurn(10)).toBeUndefined(); // reader A starts the turn's clock
    spin(15); // reader B's work, or anything else of this turn
    expect(withinTurn(10)).toBeInstanceOf(Promise);
  });
});
