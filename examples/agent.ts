// A managed agent in TypeScript: connects with its certificate, answers status
// requests, and runs directives until Ctrl-C.
//
//   npm run baton -- certs issue --role managed_agent --name task_executor_1
//   node --import tsx examples/agent.ts task_executor_1
import { readFileSync } from "node:fs";
import { createAgent } from "../src/agent/index.js";
import { clientCredentials } from "../src/rpc/index.js";

const agentId = process.argv[2] ?? "task_executor_1";
const certs = process.env.BATON_CERTS_DIR ?? "certs";
const controller = new AbortController();
process.once("SIGINT", () => controller.abort());

const agent = createAgent({
  address: process.env.BATON_ADDRESS ?? "localhost:50051",
  agentId,
  credentials: clientCredentials({
    ca: readFileSync(`${certs}/ca.pem`),
    cert: readFileSync(`${certs}/${agentId}.pem`),
    key: readFileSync(`${certs}/${agentId}.key`),
  }),
  capabilities: ["python", "summarize"],
  resources: [{ resourceId: "cpu_core_1", kind: "cpu", capacity: 1 }],
  labels: { zone: "eu-1" },
  maxInFlight: 4,
  utilization: () => 0.1,
  signal: controller.signal,
});

const welcome = await agent.connect();
process.stdout.write(`connected as ${agentId}: session ${welcome.sessionId}, heartbeat every ${Number(welcome.heartbeatInterval?.seconds ?? 0n)} s\n`);

const end = await agent.run(async (directive, ctx) => {
  process.stdout.write(`directive ${directive.directiveId}: ${directive.parameters?.kind.case}\n`);
  ctx.progress(50);
  return { ok: true };
});
process.stdout.write(`session ended: ${end.message}\n`);
