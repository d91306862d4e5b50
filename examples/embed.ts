// baton embedded in your own process, through the package's public faces only (it runs the
// built dist/: `npm run build`, or `npm install`, first):
//
//   node --import tsx examples/embed.ts
//
// A coordinator on a free port with development certificates in a temp folder, an agent on
// the SDK, and one task submitted through Control and watched to its end.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectControl, createCoordinator, TaskState } from "baton";
import { createAgent } from "baton/agent";
import { clientCredentials, ensureDevelopmentCertificates, issueToDirectory } from "baton/certs";

const dir = mkdtempSync(join(tmpdir(), "baton-embed-"));
const say = (line: string) => process.stdout.write(`${line}\n`);

try {
  // Development PKI: a CA, the coordinator's and an operator's certificates, and one agent's.
  const dev = await ensureDevelopmentCertificates({ dir });
  await issueToDirectory({ dir, role: "managed_agent", name: "embedded_agent" });
  const pem = (name: string) => ({ ca: readFileSync(dev.caPath), cert: readFileSync(join(dir, `${name}.pem`)), key: readFileSync(join(dir, `${name}.key`)) });

  const coordinator = createCoordinator({
    config: { listen: "127.0.0.1:0", adminListen: "", tls: { certsDir: dir }, store: { kind: "memory" }, log: { level: "warn" } },
  });
  const { address } = await coordinator.start();
  say(`coordinator serving on ${address}`);

  const agent = createAgent({ address, agentId: "embedded_agent", credentials: clientCredentials(pem("embedded_agent")), capabilities: ["echo"] });
  await agent.connect();
  const running = agent.run(async (directive, ctx) => {
    ctx.progress(100);
    const kind = directive.parameters?.kind;
    return { echoed: kind?.case === "assignTask" ? (kind.value.input ?? {}) : {} };
  });
  say("agent embedded_agent connected");

  const { control, close } = connectControl({ address, tls: pem("operator") });
  // Watch first, then submit, so the end cannot slip by.
  const events = control.watchEvents({ topics: ["task.hello.*"] });
  await control.submitTask({ task: { taskId: "hello", requiredCapabilities: ["echo"], input: { greeting: "hi" } } });
  for await (const { event } of events) {
    if (event?.kind.case !== "task") continue;
    const task = event.kind.value;
    if (task.state === TaskState.SUCCEEDED) {
      say(`task hello succeeded: ${JSON.stringify(task.result)}`);
      break;
    }
    if (task.state === TaskState.DEAD_LETTERED || task.state === TaskState.CANCELLED) throw new Error(`task hello ended ${TaskState[task.state]}: ${task.reason}`);
  }

  close();
  await agent.close();
  await running;
  await coordinator.shutdown();
  say("stopped");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
