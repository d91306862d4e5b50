export { createAsyncQueue, type AsyncQueue, type AsyncQueueOptions, type Overflow } from "./async-queue.js";
export { delay } from "./abort.js";
export { withinTurn } from "./turn-budget.js";
export { PeriodicWheel, type Leave } from "./periodic-wheel.js";
