export { EventLog, type EventInit, type EventLogOptions } from "./event-log.js";
export { topicMatches, isValidPattern } from "./topic-pattern.js";
export { publishCoordinatorEvents } from "./coordinator-events.js";
