// A managed agent process for the fault suite: runs every directive once, appending
// one line per effect to its effect log (keyed by directive id, with its pid), and
// reconnects through whatever the harness does to its connection.
import { appendFileSync, readFileSync } from "node:fs";
import { createAgent } from "../../src/agent/index.js";
import { clientCredentials } from "../../src/rpc/index.js";

const [address, agentId, certs, effects] = process.argv.slice(2) as [string, string, string, string];
const agent = createAgent({
  address,
  agentId,
  credentials: clientCredentials({ ca: readFileSync(`${certs}/ca.pem`), cert: readFileSync(`${certs}/${agentId}.pem`), key: readFileSync(`${certs}/${agentId}.key`) }),
  capabilities: ["work"],
  maxInFlight: 8,
  reconnectInitialMs: 50,
  reconnectMaxMs: 500,
});
await agent.connect().catch(() => undefined);
process.stdout.write("ready\n");
// Keep reconnecting even if the first attempt failed (the coordinator may be restarting).
agent.on("closed", () => process.exit(3));
await agent.run(async (directive, ctx) => {
  const taskId = directive.parameters?.kind.case === "assignTask" ? directive.parameters.kind.value.taskId : "";
  await new Promise((r) => setTimeout(r, 5 + Math.random() * 40));
  ctx.progress(50);
  // The effect: recorded once per directive id; a duplicate here (same pid) is what the checker hunts.
  appendFileSync(effects, `${JSON.stringify({ directive: directive.directiveId, task: taskId, pid: process.pid, agent: agentId })}\n`);
  return { pid: process.pid, agent: agentId };
});
