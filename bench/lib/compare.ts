// Ratios baton/peer from the scenarios of one invocation, and the target that needs a
// peer's figure (bulk submission at least RabbitMQ's confirmed publish rate).
import { FigureSet, type Figure, type ScenarioResult, type Target } from "./results.js";

function find(results: Map<string, ScenarioResult>, scenario: string, key: string): Figure | undefined {
  return results.get(scenario)?.figures.find((f) => f.key === key);
}

/** Run-by-run ratios of two figures (the medians' ratio when the run counts differ). */
function ratio(out: FigureSet, key: string, label: string, a: Figure | undefined, b: Figure | undefined, target?: Target): void {
  if (!a || !b || a.samples.length === 0 || b.samples.length === 0) return;
  const n = Math.min(a.samples.length, b.samples.length);
  for (let i = 0; i < n; i++) out.add(key, label, "x", a.samples[i]! / b.samples[i]!, target ? { target } : {});
}

/** The comparison figures that the scenarios run so far allow. */
export function comparisons(results: Map<string, ScenarioResult>): ScenarioResult {
  const out = new FigureSet();
  const unary = find(results, "throughput", "throughput.unary.tasks_per_s");
  const bulk = find(results, "throughput", "throughput.bulk.tasks_per_s");
  const echoRate = find(results, "echo", "echo.round_trips_per_s");
  const rabbitE2e = find(results, "rabbitmq", "rabbitmq.end_to_end_per_s");
  const rabbitConfirmed = find(results, "rabbitmq", "rabbitmq.confirmed_publish_per_s");
  ratio(out, "vs.throughput_echo", "baton tasks/s (unary) / raw grpc-js echo round trips/s", unary, echoRate);
  ratio(out, "vs.throughput_echo_unary", "baton tasks/s (unary) / raw grpc-js unary calls/s", unary, find(results, "echo", "echo.unary_calls_per_s"));
  ratio(out, "vs.throughput_rabbitmq", "baton tasks/s (unary) / RabbitMQ directive -> completion/s", unary, rabbitE2e);
  if (bulk?.samples.length) ratio(out, "vs.bulk_rabbitmq", "baton tasks/s (bulk) / RabbitMQ confirmed publishes/s", bulk, rabbitConfirmed, { op: ">=", value: 1 });
  else if (rabbitConfirmed?.samples.length) out.text("vs.bulk_rabbitmq", "baton tasks/s (bulk) / RabbitMQ confirmed publishes/s", "n/a: no bulk submission", { op: ">=", value: 1 });
  const lat = find(results, "latency", "latency.1.p50_ms");
  const echoP50 = find(results, "echo", "echo.p50_us");
  ratio(out, "vs.latency_echo", "baton submit -> succeeded p50 (1 agent) / raw grpc-js round trip p50", lat && { ...lat, samples: lat.samples.map((ms) => ms * 1000) }, echoP50);
  ratio(out, "vs.latency_rabbitmq", "baton submit -> succeeded p50 (1 agent) / RabbitMQ directive -> completion p50", lat, find(results, "rabbitmq", "rabbitmq.one_p50_ms"));
  const perAgent = results.get("scale")?.figures.filter((f) => /^scale\.\d+\.rss_per_agent_kib$/.test(f.key)).at(-1);
  ratio(out, "vs.memory_echo", "baton coordinator KiB per agent (largest step) / grpc-js server KiB per idle connection", perAgent, find(results, "echo", "echo.idle_kib_per_connection"));
  ratio(out, "vs.idle_echo", "baton idle coordinator CPU, 1,000 agents / raw grpc-js server CPU at their heartbeat rate", find(results, "scale", "scale.1000.idle_cpu_pct"), find(results, "echo", "echo.heartbeat_rate_cpu_pct"));
  return { scenario: "comparison", figures: out.list(), notes: [] };
}
