// Names of the spec's broker layout, shared by the RabbitMQ peer's two sides.

/** The spec's topic exchange. */
export const EXCHANGE = "coordination";
/** Routing key prefix of agent i's directives. */
export const agentRoute = (i: number): string => `agent.bench-${i}`;
/** Routing key of agent i's completions. */
export const completionRoute = (i: number): string => `coordinator.completion.bench-${i}`;
/** Agent i's durable queue in run `run`. */
export const agentQueue = (run: string, i: number): string => `bench-${run}-agent-${i}`;
/** The coordinator's durable queue of completions in run `run`. */
export const coordinatorQueue = (run: string): string => `bench-${run}-coordinator`;
