// A managed agent in TypeScript: connects with its certificate (waiting for the
// coordinator if it is not up yet), answers status requests, runs directives, and
// reconnects, resuming its session, whenever the coordinator goes away, until Ctrl-C or
// SIGTERM. A final refusal (bad certificate, PERMISSION_DENIED, UNAUTHENTICATED) ends it
// with exit code 1 and the reason on stderr.
//
//   npm run baton -- certs issue --role managed_agent --name task_executor_1
//   node --import tsx examples/agent.ts task_executor_1
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { createAgent } from "../src/agent/index.js";
import { Code } from "../src/errors.js";
import { clientCredentials } from "../src/rpc/index.js";
import { certificateProblem } from "../src/security/index.js";

const agentId = process.argv[2] ?? "task_executor_1";
const certs = process.env.BATON_CERTS_DIR ?? "certs";
const address = process.env.BATON_ADDRESS ?? "localhost:50051";
const say = (line: string) => process.stdout.write(`${line}\n`);

/** Ends the process for good: the reason on stderr, exit code 1. */
function refuse(reason: string): never {
  process.stderr.write(`${agentId}: ${reason}\n`);
  process.exit(1);
}

const files = { ca: `${certs}/ca.pem`, cert: `${certs}/${agentId}.pem`, key: `${certs}/${agentId}.key` };
const tls = Object.fromEntries(
  Object.entries(files).map(([what, path]) => {
    try {
      return [what, readFileSync(path)];
    } catch (err) {
      return refuse(`cannot read ${path}: ${(err as Error).message}`);
    }
  }),
) as Record<keyof typeof files, Buffer>;
// The coordinator's handshake would drop such a certificate without a word: say why here.
const problem = certificateProblem(tls);
if (problem) refuse(`UNAUTHENTICATED: ${files.cert}: ${problem}`);

const controller = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => controller.abort());

const agent = createAgent({
  address, // dial localhost, not 127.0.0.1: the coordinator's certificate names it
  agentId,
  credentials: clientCredentials(tls),
  capabilities: ["python", "summarize"],
  resources: [{ resourceId: "cpu_core_1", kind: "cpu", capacity: 1 }],
  labels: { zone: "eu-1" },
  maxInFlight: 4,
  utilization: () => 0.1,
  waitForCoordinator: true,
  signal: controller.signal,
});

agent.on("reconnecting", ({ end, attempt, delayMs, everConnected }) => {
  const why = `${Code[end.code]}: ${end.message}`;
  if (!everConnected) say(`waiting for the coordinator at ${address} (${why}); retrying in ${delayMs} ms`);
  else if (attempt === 1) say(`lost the coordinator (${why}); reconnecting in ${delayMs} ms`);
  else say(`the coordinator is still away (${why}); retrying in ${delayMs} ms`);
});

let welcome;
try {
  welcome = await agent.connect();
} catch (err) {
  if (controller.signal.aborted) process.exit(0);
  const e = err as { code?: Code; message: string };
  refuse(`the coordinator refused this agent: ${e.code !== undefined ? Code[e.code] : "UNKNOWN"}: ${e.message}`);
}
const heartbeatMs = welcome.heartbeatInterval ? durationMs(welcome.heartbeatInterval) : 0;
say(`connected as ${agentId}: session ${welcome.sessionId}, heartbeat every ${heartbeatMs / 1000} s`);
agent.on("welcome", (w) => say(w.resumed ? `reconnected as ${agentId}: session ${w.sessionId} resumed` : `reconnected as ${agentId}: new session ${w.sessionId} (the coordinator had not kept the old one; it replanned that work)`));

const end = await agent.run(async (directive, ctx) => {
  const kind = directive.parameters?.kind;
  say(`directive ${directive.directiveId}: ${kind?.case}${kind?.case === "assignTask" ? ` ${kind.value.taskId}` : ""}`);
  ctx.progress(50);
  // Stands in for real work: a task whose input has "work_seconds" takes that long (and stops if cancelled).
  const seconds = kind?.case === "assignTask" ? kind.value.input?.work_seconds : undefined;
  if (typeof seconds === "number" && seconds > 0) await sleep(seconds * 1000, undefined, { signal: ctx.signal });
  return { ok: true };
});
// A refusal can come later too (a revoked certificate ends the live session).
if (end.code !== Code.OK) refuse(`the coordinator refused this agent: ${Code[end.code]}: ${end.message}`);
say(`session ended: ${end.message}`);
