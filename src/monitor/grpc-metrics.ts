import { Histogram, type Registry } from "prom-client";
import { tallyCounter, type Tally } from "./tally-counter.js";
import type { CallObserver } from "../rpc/index.js";

// go-grpc-prometheus spells codes as Go's codes.Code.String() does.
const GO_CODE_NAMES = ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"];

/**
 * The standard gRPC server metrics under go-grpc-prometheus's names and labels
 * (grpc_type, grpc_service, grpc_method, grpc_code), so its dashboards and alerts work
 * unchanged; handling time in seconds with its default buckets.
 */
export function createGrpcServerMetrics(registry: Registry): CallObserver {
  const labelNames = ["grpc_type", "grpc_service", "grpc_method"] as const;
  // Tallies: every message of every stream is counted, and a prom-client increment hashes its labels.
  const started = tallyCounter({ name: "grpc_server_started_total", help: "Total number of RPCs started on the server.", labelNames, registry });
  const handled = tallyCounter({ name: "grpc_server_handled_total", help: "Total number of RPCs completed on the server, regardless of success or failure.", labelNames: [...labelNames, "grpc_code"], registry });
  const received = tallyCounter({ name: "grpc_server_msg_received_total", help: "Total number of RPC stream messages received on the server.", labelNames, registry });
  const sent = tallyCounter({ name: "grpc_server_msg_sent_total", help: "Total number of gRPC stream messages sent by the server.", labelNames, registry });
  const seconds = new Histogram({
    name: "grpc_server_handling_seconds",
    help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
    labelNames,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  return (path, type) => {
    const [, service = "", method = ""] = /^\/([^/]*)\/(.*)$/.exec(path) ?? [];
    const labels = { grpc_type: type, grpc_service: service, grpc_method: method };
    // Resolved once per method: a call or message costs an addition.
    const s = started(labels);
    const r = received(labels);
    const w = sent(labels);
    const h = seconds.labels(labels);
    const byCode = new Map<number, Tally>();
    return {
      started: () => s.inc(),
      received: () => r.inc(),
      sent: () => w.inc(),
      handled(code, elapsed) {
        let c = byCode.get(code);
        if (!c) byCode.set(code, (c = handled({ ...labels, grpc_code: GO_CODE_NAMES[code] ?? String(code) })));
        c.inc();
        h.observe(elapsed);
      },
    };
  };
}
