// A managed agent for the replica-set tests: like test/faults/agent-child.ts (one effect
// line per directive it runs, with its pid), but given every coordinator's address, so it
// follows the baton-leader trailer or tries the next one when its coordinator goes away.
import { appendFileSync, readFileSync } from "node:fs";
import { createAgent } from "../../src/agent/index.js";
import { clientCredentials } from "../../src/rpc/index.js";

const [addressList, agentId, certs, effects] = process.argv.slice(2) as [string, string, string, string];
const [address, ...addresses] = addressList.split(",") as [string, ...string[]];
const agent = createAgent({
  address,
  addresses,
  agentId,
  credentials: clientCredentials({ ca: readFileSync(`${certs}/ca.pem`), cert: readFileSync(`${certs}/${agentId}.pem`), key: readFileSync(`${certs}/${agentId}.key`) }),
  capabilities: ["work"],
  maxInFlight: 8,
  reconnectInitialMs: 50,
  reconnectMaxMs: 400,
  waitForCoordinator: true,
});
await agent.connect();
process.stdout.write("ready\n");
agent.on("closed", () => process.exit(3));
await agent.run(async (directive, ctx) => {
  const taskId = directive.parameters?.kind.case === "assignTask" ? directive.parameters.kind.value.taskId : "";
  await new Promise((r) => setTimeout(r, 5 + Math.random() * 30));
  ctx.progress(50);
  appendFileSync(effects, `${JSON.stringify({ directive: directive.directiveId, task: taskId, pid: process.pid, agent: agentId })}\n`);
  return { pid: process.pid, agent: agentId };
});
