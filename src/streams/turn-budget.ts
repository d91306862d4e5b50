import { setImmediate as nextTurn } from "node:timers/promises";

// Work on input that is already buffered never returns to the event loop by itself: each
// awaited frame resolves at once. Hundreds of busy streams then make one loop iteration
// last seconds, and what waits on the loop (socket reads, HTTP/2 ping answers, timers)
// waits as long. A turn budget bounds that: once the work of this turn has run past it,
// a reader waits for the next turn, and its stream pushes back through flow control.

let turnStart = 0;
let marking = false;

function markTurn(): void {
  marking = false;
  turnStart = performance.now();
}

/** undefined while this turn of the event loop is within `budgetMs` (go on at once); past it, a promise of the next turn. */
export function withinTurn(budgetMs: number): Promise<void> | undefined {
  const now = performance.now();
  if (!marking) {
    // The first reader of a turn starts its clock; a setImmediate restarts it next turn.
    marking = true;
    turnStart = now;
    setImmediate(markTurn);
    return undefined;
  }
  return now - turnStart > budgetMs ? nextTurn() : undefined;
}
