// One agent of `baton demo`, in its own process: runs each task for its input's work_ms,
// reporting progress as it goes, until the demo ends it (SIGTERM) or kills it (SIGKILL).
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { createAgent } from "../../agent/index.js";
import { clientCredentials } from "../../rpc/index.js";

/** What the demo tells an agent process, as JSON in argv[2]. */
export interface DemoAgentSpec {
  address: string;
  agentId: string;
  certsDir: string;
  capabilities: string[];
  resources: Array<{ resourceId: string; kind: string; capacity: number }>;
  maxInFlight: number;
}

const spec = JSON.parse(process.argv[2] ?? "{}") as DemoAgentSpec;
const controller = new AbortController();
process.once("SIGTERM", () => controller.abort());
process.once("SIGINT", () => controller.abort());
// The demo is this process's parent: when it goes, so does the agent.
process.on("disconnect", () => controller.abort());

const agent = createAgent({
  address: spec.address,
  agentId: spec.agentId,
  credentials: clientCredentials({ ca: readFileSync(`${spec.certsDir}/ca.pem`), cert: readFileSync(`${spec.certsDir}/${spec.agentId}.pem`), key: readFileSync(`${spec.certsDir}/${spec.agentId}.key`) }),
  capabilities: spec.capabilities,
  resources: spec.resources,
  maxInFlight: spec.maxInFlight,
  waitForCoordinator: true,
  reconnectInitialMs: 50,
  reconnectMaxMs: 500,
  signal: controller.signal,
});
await agent.connect().catch(() => process.exit(controller.signal.aborted ? 0 : 1));
process.send?.({ ready: spec.agentId });
await agent.run(async (directive, ctx) => {
  const kind = directive.parameters?.kind;
  const input = kind?.case === "assignTask" || kind?.case === "formCoalition" ? kind.value.input : undefined;
  const workMs = typeof input?.work_ms === "number" ? input.work_ms : 1000;
  const steps = 10;
  for (let i = 1; i <= steps; i++) {
    await sleep(workMs / steps, undefined, { signal: ctx.signal });
    ctx.progress((i / steps) * 100);
  }
  return { agent: spec.agentId, work_ms: workMs };
});
process.exit(0);
