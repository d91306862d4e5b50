import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { credentials as grpcCredentials } from "@grpc/grpc-js";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { createAgent, type BatonAgent, type SessionEnd } from "../../src/agent/index.js";
import { clientCredentials, createChannel, createClient } from "../../src/rpc/index.js";
import { normalizeSerial, renewInDirectory, type IssuedPem } from "../../src/security/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";

// Rotation of message keys and renewal of the server certificate, each while 100 agents
// hold sessions: no session may drop and no message that should pass may be refused.

const AGENTS = 100;
let pki: TestPki;
let leaves: IssuedPem[];
let srv: TestServer;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  pki = await makePki();
  // One key certified 100 times: a hundred RSA key generations would only load the machine.
  const first = await pki.issue("managed_agent", "h0");
  leaves = [first, ...(await Promise.all(Array.from({ length: AGENTS - 1 }, (_, i) => pki.issue("managed_agent", `h${i + 1}`, { keyPem: first.keyPem }))))];
}, 60_000);
afterAll(() => pki.cleanup());
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
  await srv?.stop();
});

async function connectAll(ends: SessionEnd[], completed: Set<string>): Promise<BatonAgent[]> {
  return Promise.all(
    leaves.map(async (leaf, i) => {
      const a = createAgent({ address: srv.address, agentId: `h${i}`, credentials: clientCredentials({ ca: pki.ca.certPem, cert: leaf.certPem, key: leaf.keyPem }), capabilities: ["python"], requireMessageSecurity: true });
      cleanups.push(() => a.close());
      a.on("disconnected", (end) => ends.push(end));
      await a.connect();
      void a.run(async (directive) => {
        await sleep(5);
        completed.add(directive.directiveId);
        return { by: `h${i}` };
      });
      return a;
    }),
  );
}

async function allSucceeded(control: ReturnType<typeof createClient<typeof Control>>, ids: string[], timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { tasks } = await control.listTasks({ pageSize: 1000 });
    const done = tasks.filter((t) => ids.includes(t.spec!.taskId) && t.state === TaskState.SUCCEEDED).length;
    if (done === ids.length || Date.now() > deadline) return done;
    await sleep(100);
  }
}

describe(`${AGENTS} agents streaming`, () => {
  it("go through several message-key rotations with no session dropped and no message refused", async () => {
    // Quiet sessions rotate on heartbeats (each tick checks the key's age), so 1 s heartbeats keep
    // rotations coming; 30 misses (30 s, on both sides: the SDK follows Welcome.heartbeat_misses)
    // keep a loaded machine's stalls, 100 mTLS handshakes at once among them, from ending sessions.
    // The grace outlasts a loaded machine's stalls too: an agent that has not yet read a rotation still signs with a key in grace.
    srv = await startServer(pki, { session: { heartbeatIntervalMs: 1000, heartbeatMisses: 30 }, security: { keyRotationMs: 1000, keyGraceMs: 60_000 } });
    const ends: SessionEnd[] = [];
    const completed = new Set<string>();
    const agents = await connectAll(ends, completed);
    const control = createClient(Control, createChannel(srv.address, await pki.credentials("operator", "ops")));
    const ids: string[] = [];
    // Work flows the whole time keys rotate: 300 tasks over about 3 s.
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 30 }, (_, i) => {
          const taskId = `rot-${round}-${i}`;
          ids.push(taskId);
          return control.submitTask({ task: { taskId, requiredCapabilities: ["python"] } });
        }),
      );
      await sleep(400);
    }
    expect(await allSucceeded(control, ids, 120_000)).toBe(ids.length);
    const rotations = srv.logs.lines.filter((l) => l.msg === "message keys rotated");
    const perAgent = new Map<string, number>();
    for (const line of rotations) perAgent.set(line.agent_id as string, (perAgent.get(line.agent_id as string) ?? 0) + 1);
    expect(perAgent.size).toBe(AGENTS);
    expect(Math.min(...perAgent.values())).toBeGreaterThanOrEqual(2);
    expect(ends).toEqual([]);
    expect(agents.every((a) => a.session !== undefined)).toBe(true);
    const refused = srv.logs.lines.filter((l) => (l.level === "warn" || l.level === "error") && /refused|signature|replay|retired|unknown/.test(String(l.msg) + String(l.reason ?? "")));
    expect(refused).toEqual([]);
  }, 240_000);

  it("keep their sessions while the server certificate is renewed; new connections get the new certificate", async () => {
    const dir = pki.writeFiles({ "ca.pem": pki.ca.certPem, "ca.key": pki.ca.keyPem, "coordinator.pem": pki.server.certPem, "coordinator.key": pki.server.keyPem });
    srv = await startServer(pki, { tls: { certsDir: dir, reloadIntervalMs: 100 } }, undefined, true);
    const ends: SessionEnd[] = [];
    const completed = new Set<string>();
    const agents = await connectAll(ends, completed);
    const seen: string[] = [];
    const opsLeaf = await pki.issue("operator", "ops");
    const watchingCreds = () =>
      grpcCredentials.createSsl(Buffer.from(pki.ca.certPem), Buffer.from(opsLeaf.keyPem), Buffer.from(opsLeaf.certPem), {
        checkServerIdentity: (_host, cert) => {
          seen.push(normalizeSerial(cert.serialNumber));
          return undefined;
        },
      });
    await createClient(Control, createChannel(srv.address, watchingCreds())).listAgents({});
    expect(seen.at(-1)).toBe(normalizeSerial(pki.server.serial));
    const renewed = await renewInDirectory({ dir, name: "coordinator" });
    await waitFor(() => srv.logs.lines.some((l) => l.msg === "TLS certificate reloaded"), 5000, "the certificate reload");
    const control = createClient(Control, createChannel(srv.address, watchingCreds()));
    await control.listAgents({});
    expect(seen.at(-1)).toBe(renewed.newSerial);
    expect(normalizeSerial(new X509Certificate(readFileSync(join(dir, "coordinator.pem"))).serialNumber)).toBe(renewed.newSerial);
    // The sessions opened under the old certificate carry work after the renewal.
    const ids = Array.from({ length: 100 }, (_, i) => `renew-${i}`);
    await Promise.all(ids.map((taskId) => control.submitTask({ task: { taskId, requiredCapabilities: ["python"] } })));
    expect(await allSucceeded(control, ids, 120_000)).toBe(ids.length);
    expect(ends).toEqual([]);
    expect(agents.every((a) => a.session !== undefined)).toBe(true);
  }, 240_000);
});
