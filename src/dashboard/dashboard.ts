import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { create, toJson, type DescMessage, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import {
  AgentSchema,
  CancelTaskRequestSchema,
  CancelTaskResponseSchema,
  DrainAgentRequestSchema,
  DrainAgentResponseSchema,
  ExplainTaskRequestSchema,
  ExplainTaskResponseSchema,
  GetCoordinationRequestSchema,
  GetCoordinationResponseSchema,
  ListAgentsRequestSchema,
  ListTasksRequestSchema,
  ListTasksResponseSchema,
  ResubmitTaskRequestSchema,
  ResubmitTaskResponseSchema,
  TaskState,
  type Control,
} from "../../gen/baton/v1/control_pb.js";
import { SystemMetricsSchema, type SystemMetrics } from "../../gen/baton/v1/performance_monitor_pb.js";
import { BatonError, Code, invalidArgument, notFound } from "../errors.js";
import type { EventLog } from "../events/index.js";
import type { Logger } from "../logging.js";
import { redact, type CallGuard, type HandlerContext, type ServiceImpl } from "../rpc/index.js";
import type { Policy } from "../security/index.js";
import { authorize, checkAction, resolveCaller, type CallerMode, type DashboardCaller } from "./caller.js";
import { streamEvents } from "./event-stream.js";
import { sendError, sendJson } from "./http-answers.js";
import type { StaticFiles } from "./static-files.js";

/** What the dashboard reads and acts through: the very Control operations the gRPC port serves. */
export interface DashboardOptions {
  control: ServiceImpl<typeof Control>;
  events: EventLog;
  /** The synced view's utilization of an agent (0..1), if it reported one. */
  utilization(agentId: string): number | undefined;
  /** Task counts by state. */
  taskCounts(): Map<TaskState, number>;
  /** The Performance Monitor's figures, when it runs in this process. */
  metrics: (() => SystemMetrics) | undefined;
  mode: CallerMode;
  guard: CallGuard;
  policy: Policy;
  files: StaticFiles;
  pulseMs: number;
  logger: Logger;
}

/** The dashboard's routes on the admin port. */
export interface Dashboard {
  /** Answers a request under /dashboard (and / itself); false when the path is not the dashboard's. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** Ends the open event streams (shutdown). */
  close(): void;
}

const PREFIX = "/dashboard";
// Active work and dead letters, the page's task table; finished tasks come live from events.
const LISTED_STATES = [TaskState.PENDING, TaskState.ASSIGNED, TaskState.RUNNING, TaskState.DEAD_LETTERED];
const LISTED_MAX = 500;

const M = (name: string) => `/baton.v1.Control/${name}`;
// What the event stream shows, by the Control methods that read the same.
const STREAM_METHODS = [M("WatchEvents"), M("ListTasks"), M("ListAgents"), M("GetCoordination")];
const METRICS_METHOD = "/baton.v1.PerformanceMonitor/GetMetrics";

/** A path segment's id, percent-decoded. */
function idOf(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw invalidArgument(`${JSON.stringify(segment.slice(0, 64))} is not a percent-encoded id`);
  }
}

function json<D extends DescMessage>(schema: D, message: MessageShape<D>): JsonValue {
  // Redacted as the gRPC adapter redacts every answer: sensitive_input never reaches the page.
  return toJson(schema, redact(schema, message));
}

/** Creates the dashboard's request handler. */
export function createDashboard(options: DashboardOptions): Dashboard {
  const { control, mode, logger } = options;
  const streams = new Set<AbortController>();

  const ctxFor = (caller: DashboardCaller, method: string, signal: AbortSignal): HandlerContext => ({
    method,
    signal,
    deadline: undefined,
    requestHeader: new Map(),
    peer: caller.peer,
    identity: caller.identity,
    correlationId: randomUUID(),
    logger,
  });

  const call = <T>(fn: ((req: never, ctx: HandlerContext) => Promise<T>) | undefined, name: string): ((req: unknown, ctx: HandlerContext) => Promise<T>) => {
    if (!fn) throw new BatonError(Code.UNIMPLEMENTED, `Control.${name} is not served by this coordinator`);
    return fn as (req: unknown, ctx: HandlerContext) => Promise<T>;
  };

  const canDo = (caller: DashboardCaller, method: string) => {
    const capability = options.policy.capabilityOf(method);
    return capability !== undefined && options.policy.allows(caller.identity.role, capability);
  };

  async function pulse(caller: DashboardCaller, signal: AbortSignal): Promise<Record<string, JsonValue>> {
    const agents = await call(control.listAgents, "ListAgents")(create(ListAgentsRequestSchema, {}), ctxFor(caller, M("ListAgents"), signal));
    const coordination = await call(control.getCoordination, "GetCoordination")(create(GetCoordinationRequestSchema, {}), ctxFor(caller, M("GetCoordination"), signal));
    const counts: Record<string, number> = {};
    for (const [state, n] of options.taskCounts()) counts[TaskState[state]] = n;
    const showMetrics = options.metrics && canDo(caller, METRICS_METHOD);
    return {
      at: new Date().toISOString(),
      agents: agents.agents.map((a) => ({ ...(json(AgentSchema, a) as Record<string, JsonValue>), utilization: options.utilization(a.agentId) ?? null })),
      coordination: json(GetCoordinationResponseSchema, coordination),
      counts,
      metrics: showMetrics ? json(SystemMetricsSchema, options.metrics!()) : null,
    };
  }

  async function snapshot(caller: DashboardCaller, signal: AbortSignal): Promise<string> {
    const page = await call(control.listTasks, "ListTasks")(create(ListTasksRequestSchema, { states: LISTED_STATES, pageSize: LISTED_MAX }), ctxFor(caller, M("ListTasks"), signal));
    return JSON.stringify({
      ...(await pulse(caller, signal)),
      tasks: (json(ListTasksResponseSchema, page) as { tasks?: JsonValue[] }).tasks ?? [],
      more: page.nextPageToken !== "",
      me: {
        identity: caller.identity.uri,
        can: { cancel: canDo(caller, M("CancelTask")), resubmit: canDo(caller, M("ResubmitTask")), drain: canDo(caller, M("DrainAgent")), explain: canDo(caller, M("ExplainTask")) },
      },
    });
  }

  const refuse = (caller: DashboardCaller, ...methods: string[]) => {
    for (const method of methods) {
      const refusal = authorize(caller, method, mode, options.guard, options.policy);
      if (refusal) throw refusal;
    }
  };

  async function events(req: IncomingMessage, res: ServerResponse, caller: DashboardCaller): Promise<void> {
    refuse(caller, ...STREAM_METHODS);
    const abort = new AbortController();
    streams.add(abort);
    req.on("close", () => abort.abort());
    try {
      await streamEvents(req, res, { events: options.events, snapshot: (s) => snapshot(caller, s), pulse: async (s) => JSON.stringify(await pulse(caller, s)), pulseMs: options.pulseMs, logger }, abort.signal);
    } finally {
      streams.delete(abort);
    }
  }

  async function action(req: IncomingMessage, res: ServerResponse, caller: DashboardCaller, kind: "tasks" | "agents", id: string, verb: string): Promise<void> {
    const actionRefusal = checkAction(req);
    if (actionRefusal) throw actionRefusal;
    const signal = AbortSignal.timeout(30_000);
    if (kind === "tasks" && verb === "cancel") {
      refuse(caller, M("CancelTask"));
      const out = await call(control.cancelTask, "CancelTask")(create(CancelTaskRequestSchema, { taskId: id, reason: `cancelled from the dashboard by ${caller.identity.uri}` }), ctxFor(caller, M("CancelTask"), signal));
      return sendJson(res, 200, json(CancelTaskResponseSchema, out));
    }
    if (kind === "tasks" && verb === "resubmit") {
      refuse(caller, M("ResubmitTask"));
      const out = await call(control.resubmitTask, "ResubmitTask")(create(ResubmitTaskRequestSchema, { taskId: id }), ctxFor(caller, M("ResubmitTask"), signal));
      return sendJson(res, 200, json(ResubmitTaskResponseSchema, out));
    }
    if (kind === "agents" && verb === "drain") {
      refuse(caller, M("DrainAgent"));
      const out = await call(control.drainAgent, "DrainAgent")(create(DrainAgentRequestSchema, { agentId: id, reason: `drained from the dashboard by ${caller.identity.uri}` }), ctxFor(caller, M("DrainAgent"), signal));
      return sendJson(res, 200, json(DrainAgentResponseSchema, out));
    }
    throw notFound(`the dashboard has no action ${verb} on ${kind}`);
  }

  async function route(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const caller = resolveCaller(req, mode);
    const method = req.method ?? "GET";
    if (path === "/api/events" && method === "GET") return events(req, res, caller);
    const explain = /^\/api\/tasks\/([^/]+)\/explain$/.exec(path);
    if (explain && method === "GET") {
      refuse(caller, M("ExplainTask"));
      const out = await call(control.explainTask, "ExplainTask")(create(ExplainTaskRequestSchema, { taskId: idOf(explain[1]!) }), ctxFor(caller, M("ExplainTask"), AbortSignal.timeout(30_000)));
      return sendJson(res, 200, json(ExplainTaskResponseSchema, out));
    }
    const act = /^\/api\/(tasks|agents)\/([^/]+)\/([a-z]+)$/.exec(path);
    if (act && method === "POST") return action(req, res, caller, act[1] as "tasks" | "agents", idOf(act[2]!), act[3]!);
    if (path.startsWith("/api/")) throw notFound(`no dashboard call ${method} ${PREFIX}${path}`);
    if (method !== "GET") throw new BatonError(Code.INVALID_ARGUMENT, `the dashboard's pages answer GET, not ${method}`);
    // The page itself holds no data: any authenticated caller may load it; what it shows needs the capabilities above.
    if (!options.files.serve(path.replace(/^\//, ""), res)) {
      if (!options.files.built) throw new BatonError(Code.UNAVAILABLE, "the dashboard is not built: run `npm run build:dashboard` (npm install does it)");
      throw notFound(`no dashboard file ${PREFIX}${path}`);
    }
  }

  return {
    handle(req, res) {
      const url = new URL(req.url ?? "/", "http://admin.invalid");
      if (url.pathname === "/" || url.pathname === PREFIX) {
        if (url.pathname === "/" && req.method !== "GET") return false;
        res.writeHead(302, { location: `${PREFIX}/` }).end();
        return true;
      }
      if (!url.pathname.startsWith(`${PREFIX}/`)) return false;
      route(req, res, url.pathname.slice(PREFIX.length)).catch((err: unknown) => sendError(res, err, logger));
      return true;
    },
    close() {
      for (const s of streams) s.abort();
    },
  };
}
