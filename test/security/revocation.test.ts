import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import type { ChannelCredentials } from "@grpc/grpc-js";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { createAgent, type BatonAgent, type SessionEnd } from "../../src/agent/index.js";
import { Code } from "../../src/errors.js";
import { clientCredentials, createChannel, createClient } from "../../src/rpc/index.js";
import { normalizeSerial, revokeCertificate, type IssuedPem } from "../../src/security/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();
let dir: string;

/** A server whose TLS files and deny list live in a folder it polls every 100 ms. */
async function startFromFiles(overrides: Parameters<typeof startServer>[1] = {}): Promise<void> {
  dir = fx.pki.writeFiles({ "ca.pem": fx.pki.ca.certPem, "ca.key": fx.pki.ca.keyPem, "coordinator.pem": fx.pki.server.certPem, "coordinator.key": fx.pki.server.keyPem });
  fx.srv = await startServer(fx.pki, { tls: { certsDir: dir, reloadIntervalMs: 100 }, ...overrides }, undefined, true);
}

function credsOf(leaf: IssuedPem): ChannelCredentials {
  return clientCredentials({ ca: fx.pki.ca.certPem, cert: leaf.certPem, key: leaf.keyPem });
}

async function agentWith(id: string, leaf: IssuedPem, ends: SessionEnd[] = []): Promise<BatonAgent> {
  const a = createAgent({ address: fx.srv.address, agentId: id, credentials: credsOf(leaf), capabilities: ["python"], reconnectInitialMs: 50, reconnectMaxMs: 200 });
  fx.defer(() => a.close());
  a.on("disconnected", (end) => ends.push(end));
  await a.connect();
  void a.run(async () => ({ ok: true }));
  return a;
}

describe("revoked certificates", () => {
  it("are refused on new connections (UNAUTHENTICATED) once the deny list names them, without a restart", async () => {
    await startFromFiles();
    const leaf = await fx.pki.issue("operator", "eve");
    const control = createClient(Control, createChannel(fx.srv.address, credsOf(leaf)));
    await expect(control.listAgents({})).resolves.toBeTruthy();
    revokeCertificate(join(dir, "revoked.json"), { serial: leaf.serial, reason: "key compromise" });
    // The deny list is polled (100 ms here); a fresh channel is a new connection.
    await waitFor(() => fx.srv.logs.lines.some((l) => l.msg === "certificates revoked"), 5000, "the deny list reload");
    const fresh = createClient(Control, createChannel(fx.srv.address, credsOf(leaf)));
    await expect(fresh.listAgents({})).rejects.toMatchObject({ code: Code.UNAUTHENTICATED, details: expect.stringMatching(new RegExp(`certificate serial ${normalizeSerial(leaf.serial)} .* is revoked`)) });
    // The open connection too, whose identity the server had already read: revocation is asked per call.
    await expect(control.listAgents({})).rejects.toMatchObject({ code: Code.UNAUTHENTICATED, details: expect.stringMatching(/revoked/) });
    const other = createClient(Control, createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops")));
    await expect(other.listAgents({})).resolves.toBeTruthy();
  });

  it("have their live sessions and streams closed; other agents keep theirs", async () => {
    await startFromFiles();
    const malloryLeaf = await fx.pki.issue("managed_agent", "mallory");
    const bystanderLeaf = await fx.pki.issue("managed_agent", "bystander");
    const malloryEnds: SessionEnd[] = [];
    const bystanderEnds: SessionEnd[] = [];
    await agentWith("mallory", malloryLeaf, malloryEnds);
    const bystander = await agentWith("bystander", bystanderLeaf, bystanderEnds);
    const opsLeaf = await fx.pki.issue("operator", "watcher");
    const watch = createClient(Control, createChannel(fx.srv.address, credsOf(opsLeaf))).watchEvents({ topics: ["#"] });
    const watchEnded = (async () => {
      try {
        for await (const _ of watch) { /* events */ }
        return { code: 0 };
      } catch (err) {
        return err as { code: number; details: string };
      }
    })();
    await sleep(100);
    revokeCertificate(join(dir, "revoked.json"), { serial: malloryLeaf.serial });
    revokeCertificate(join(dir, "revoked.json"), { serial: opsLeaf.serial });
    const end = await waitFor(() => malloryEnds[0], 5000, "mallory's session to close");
    expect(end).toMatchObject({ code: Code.UNAUTHENTICATED, message: expect.stringMatching(/was revoked/) });
    expect(await watchEnded).toMatchObject({ code: Code.UNAUTHENTICATED, details: expect.stringMatching(/was revoked/) });
    const metrics = await (await fetch(`http://127.0.0.1:${fx.srv.server.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/baton_revoked_calls_closed_total 2/);
    // The bystander is untouched and still gets work.
    expect(bystanderEnds).toEqual([]);
    const control = createClient(Control, createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops")));
    await control.submitTask({ task: { taskId: "after-revoke", requiredCapabilities: ["python"], target: { agentId: "bystander" } } });
    for (let i = 0; i < 200; i++) {
      const { task } = await control.getTask({ taskId: "after-revoke" });
      if (task?.state === TaskState.SUCCEEDED) break;
      await sleep(25);
    }
    expect((await control.getTask({ taskId: "after-revoke" })).task?.state).toBe(TaskState.SUCCEEDED);
    expect(bystander.session).toBeDefined();
  });

  it("keeps the previous deny list when the file turns malformed, and says so", async () => {
    await startFromFiles();
    const leaf = await fx.pki.issue("operator", "eve");
    revokeCertificate(join(dir, "revoked.json"), { serial: leaf.serial });
    fx.srv.server.access.reloadDenyList();
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(dir, "revoked.json"), "{ not json");
    fx.srv.server.access.reloadDenyList();
    expect(fx.srv.logs.lines.some((l) => l.msg === "the deny list cannot be read; the previous one stays in force")).toBe(true);
    await expect(createClient(Control, createChannel(fx.srv.address, credsOf(leaf))).listAgents({})).rejects.toMatchObject({ code: Code.UNAUTHENTICATED });
  });
});

describe("server certificate renewal", () => {
  it("refuses renewed files that do not fit (key of another certificate) and keeps serving the old certificate", async () => {
    await startFromFiles();
    const other = await fx.pki.issue("coordinator", "other");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(dir, "coordinator.key"), other.keyPem);
    await waitFor(() => fx.srv.logs.lines.some((l) => l.msg === "renewed TLS files are not usable; still serving the previous certificate"), 5000, "the refusal");
    await expect(createClient(Control, createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops"))).listAgents({})).resolves.toBeTruthy();
  });
});
