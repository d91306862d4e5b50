// The JSON forms (protobuf's canonical JSON) of what the dashboard's server sends: only
// the fields the page reads. The messages themselves are in proto/baton/v1/control.proto.

export interface ProgressUpdate {
  taskId?: string;
  status?: string;
  metrics?: { completionPercentage?: number; resourceUtilization?: number };
  sourceAgent?: string;
  timestamp?: string;
}

export interface TaskAttempt {
  attempt?: number;
  agents?: string[];
  startedAt?: string;
  endedAt?: string;
  outcome?: string;
  reason?: string;
}

export interface Task {
  spec?: { taskId: string; requiredCapabilities?: string[]; priority?: string; coalition?: { roles?: string[]; size?: number }; labels?: Record<string, string> };
  state?: string;
  assignedAgents?: string[];
  attempts?: TaskAttempt[];
  reason?: string;
  createdAt?: string;
  updatedAt?: string;
  progress?: ProgressUpdate;
}

export interface Agent {
  agentId: string;
  state?: string;
  capabilities?: string[];
  labels?: Record<string, string>;
  maxInFlight?: number;
  inFlight?: number;
  lastSeen?: string;
  breaker?: string;
  stateReason?: string;
  /** The synced view's figure, 0..1; null before the agent reported one. */
  utilization: number | null;
}

export interface Round {
  roundId: string;
  state?: string;
  trigger?: string;
  taskIds?: string[];
  agentIds?: string[];
  startedAt?: string;
  updatedAt?: string;
}

export interface LatencySummary {
  count?: string;
  p50Ms?: number;
  p90Ms?: number;
  p99Ms?: number;
  maxMs?: number;
}

export interface SystemMetrics {
  messagesPerSecond?: number;
  messageLatency?: LatencySummary;
  directiveCompletionTime?: LatencySummary;
  rounds?: { completed?: string; failed?: string; successRate?: number };
}

export interface Pulse {
  at: string;
  agents: Agent[];
  coordination: { coordinatorId?: string; rounds?: Round[]; recent?: Round[] };
  counts: Record<string, number>;
  metrics: SystemMetrics | null;
}

export interface Snapshot extends Pulse {
  tasks: Task[];
  more: boolean;
  me: { identity: string; can: { cancel: boolean; resubmit: boolean; drain: boolean; explain: boolean } };
}

export interface ChangeEvent {
  cursor: string;
  topic: string;
  reason?: string;
  task?: Task;
  agent?: Omit<Agent, "utilization">;
  round?: Round;
  progress?: ProgressUpdate;
}

export interface Obstacle {
  kind?: string;
  detail?: string;
}

export interface Explanation {
  summary?: string;
  notBefore?: string;
  roundId?: string;
  strategy?: string;
  eligibleCount?: number;
  agents?: Array<{ agentId: string; state?: string; eligible?: boolean; chosen?: boolean; obstacles?: Obstacle[]; inFlight?: number; maxInFlight?: number; reason?: string }>;
}

/** A sample of the metrics charts. */
export interface Sample {
  at: number;
  latencyP50: number;
  latencyP99: number;
  successRate: number;
  completionP50: number;
  completionP99: number;
}

/** Drops the enum prefix: "TASK_STATE_PENDING" -> "pending". */
export function enumName(value: string | undefined, prefix: string): string {
  if (!value) return "unspecified";
  return (value.startsWith(prefix) ? value.slice(prefix.length) : value).toLowerCase();
}
