export { EventLog, WATCH_LIMITS, type EventInit, type EventLogOptions } from "./event-log.js";
export { topicMatches, isValidPattern, topicSegment } from "./topic-pattern.js";
export { TopicIndex } from "./topic-index.js";
export { publishCoordinatorEvents } from "./coordinator-events.js";
export { publishTaskProgress, type TaskProgressOptions, type TaskProgressView } from "./task-progress.js";
