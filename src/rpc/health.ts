import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";
import { notFound, quote } from "../errors.js";
import type { ServiceImpl } from "./server-adapter.js";

export { ServingStatus };

/** The grpc.health.v1 state of one server: "" is the whole server. */
export interface HealthState {
  /** Sets a service's status and tells its watchers. */
  set(service: string, status: ServingStatus): void;
  /** Marks everything NOT_SERVING (on shutdown). */
  shutdown(): void;
  /** The handlers. */
  readonly impl: ServiceImpl<typeof Health>;
  /** The services it reports on (not "", the whole server). */
  readonly services: string[];
}

/** grpc.health.v1.Health over the generic adapter. */
export function createHealth(services: string[]): HealthState {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  for (const name of services) statuses.set(name, ServingStatus.SERVING);
  const watchers = new Set<() => void>();
  const notify = () => {
    for (const wake of watchers) wake();
  };
  const response = (status: ServingStatus): HealthCheckResponse => create(HealthCheckResponseSchema, { status });
  return {
    services,
    set(service, status) {
      statuses.set(service, status);
      notify();
    },
    shutdown() {
      for (const name of statuses.keys()) statuses.set(name, ServingStatus.NOT_SERVING);
      notify();
    },
    impl: {
      async check(req) {
        const status = statuses.get(req.service);
        if (status === undefined) throw notFound(`unknown service ${quote(req.service)}`);
        return response(status);
      },
      async *watch(req, ctx) {
        let last: ServingStatus | undefined;
        while (!ctx.signal.aborted) {
          const status = statuses.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
          if (status !== last) {
            last = status;
            yield response(status);
          }
          await new Promise<void>((resolve) => {
            const wake = () => {
              watchers.delete(wake);
              ctx.signal.removeEventListener("abort", wake);
              resolve();
            };
            watchers.add(wake);
            ctx.signal.addEventListener("abort", wake, { once: true });
          });
        }
      },
    },
  };
}
