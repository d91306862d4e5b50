import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createAgent, type BatonAgent, type Reconnecting } from "../../src/agent/index.js";
import { backoffMs, finalRefusal } from "../../src/agent/reconnect.js";
import { BatonError, Code } from "../../src/errors.js";
import { clientCredentials } from "../../src/rpc/index.js";
import { certificateProblem, createCertificateAuthority } from "../../src/security/index.js";
import { useFixture } from "../helpers/fixture.js";
import { freePort, ROOT, run, TSX } from "../helpers/process.js";
import { startServer } from "../helpers/server.js";

const fx = useFixture();

async function agentFor(address: string, id: string, options: Partial<Parameters<typeof createAgent>[0]> = {}): Promise<BatonAgent> {
  const agent = createAgent({ address, agentId: id, credentials: await fx.pki.credentials("managed_agent", id), reconnectInitialMs: 20, reconnectMaxMs: 200, ...options });
  fx.defer(() => agent.close());
  return agent;
}

const codeOf = (p: Promise<unknown>) => p.then(() => "connected", (err: unknown) => (err instanceof BatonError ? Code[err.code] : String(err)));

describe("waiting for the coordinator on the first connect", () => {
  it("without waitForCoordinator, a first connect to no coordinator rejects UNAVAILABLE", async () => {
    const agent = await agentFor(`localhost:${await freePort()}`, "a_1");
    expect(await codeOf(agent.connect())).toBe("UNAVAILABLE");
  });

  it("with waitForCoordinator, the first connect retries until the coordinator is up, then resolves", async () => {
    const port = await freePort();
    const agent = await agentFor(`localhost:${port}`, "a_2", { waitForCoordinator: true });
    const tries: Reconnecting[] = [];
    agent.on("reconnecting", (r) => tries.push(r));
    const connecting = agent.connect();
    const firstTry = once(agent, "reconnecting");
    await firstTry;
    expect(tries[0]).toMatchObject({ attempt: 1, everConnected: false, end: { code: Code.UNAVAILABLE } });
    fx.srv = await startServer(fx.pki, { listen: `127.0.0.1:${port}` });
    const welcome = await connecting;
    expect(welcome.sessionId).not.toBe("");
    expect(tries.every((t) => !t.everConnected)).toBe(true);
  });

  it("close() while it waits rejects connect() with CANCELLED", async () => {
    const agent = await agentFor(`localhost:${await freePort()}`, "a_3", { waitForCoordinator: true });
    const connecting = codeOf(agent.connect());
    await once(agent, "reconnecting");
    await agent.close();
    expect(await connecting).toBe("CANCELLED");
  });

  it("a refusal is final even so: another agent's certificate rejects with PERMISSION_DENIED, at once", async () => {
    fx.srv = await startServer(fx.pki);
    const agent = createAgent({ address: fx.srv.address, agentId: "a_4", credentials: await fx.pki.credentials("managed_agent", "someone_else"), waitForCoordinator: true });
    fx.defer(() => agent.close());
    let retried = false;
    agent.on("reconnecting", () => (retried = true));
    expect(await codeOf(agent.connect())).toBe("PERMISSION_DENIED");
    expect(retried).toBe(false);
    expect((await agent.done).code).toBe(Code.PERMISSION_DENIED);
  });

  it("a coordinator certificate this agent does not trust is final: UNAUTHENTICATED, naming the certificate", async () => {
    fx.srv = await startServer(fx.pki);
    const otherCa = await createCertificateAuthority({ trustDomain: fx.pki.trustDomain });
    const leaf = await fx.pki.issue("managed_agent", "a_5");
    const agent = createAgent({ address: fx.srv.address, agentId: "a_5", credentials: clientCredentials({ ca: otherCa.certPem, cert: leaf.certPem, key: leaf.keyPem }), waitForCoordinator: true });
    fx.defer(() => agent.close());
    const err = await agent.connect().then(() => undefined, (e: unknown) => e as BatonError);
    expect(err?.code).toBe(Code.UNAUTHENTICATED);
    expect(err?.message).toMatch(/certificate/);
  });
});

describe("reconnect policy", () => {
  it.each([
    ["PERMISSION_DENIED", "certificate spiffe://x may not connect as agent a", "PERMISSION_DENIED"],
    ["UNAUTHENTICATED", "certificate serial 01 is revoked", "UNAUTHENTICATED"],
    ["UNAVAILABLE", "No connection established. Last error: Error: self-signed certificate in certificate chain.", "UNAUTHENTICATED"],
    ["UNAVAILABLE", "No connection established. Last error: Error: Hostname/IP does not match certificate's altnames: Host: x.", "UNAUTHENTICATED"],
  ] as const)("%s (%s) is final, as %s", (code, message, final) => {
    expect(finalRefusal({ code: Code[code], message })?.code).toBe(Code[final]);
  });

  it.each([
    ["UNAVAILABLE", "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1."],
    ["UNAVAILABLE", "No connection established. Last error: Failed to connect (2026-01-01T00:00:00.000Z)."],
    ["UNAVAILABLE", "the coordinator is shutting down"],
    ["INTERNAL", "internal error"],
    ["CANCELLED", "Cancelled on client"],
  ] as const)("%s (%s) is worth a retry", (code, message) => {
    expect(finalRefusal({ code: Code[code], message })).toBeUndefined();
  });

  it("backs off exponentially with equal jitter, up to the cap", () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffMs(n, 100, 1000, () => 1))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect([1, 2, 3].map((n) => backoffMs(n, 100, 1000, () => 0))).toEqual([50, 100, 200]);
  });
});

describe("what a handshake would refuse, said before connecting", () => {
  it("names an expired certificate, one from another CA, and a key of another certificate; passes a good one", async () => {
    const day = 86_400_000;
    const good = await fx.pki.issue("managed_agent", "a_6");
    const expired = await fx.pki.issue("managed_agent", "a_6", { notBefore: new Date(Date.now() - 2 * day), notAfter: new Date(Date.now() - day) });
    const other = await fx.pki.issue("managed_agent", "a_7");
    const otherCa = await createCertificateAuthority({ trustDomain: fx.pki.trustDomain });
    const ca = fx.pki.ca.certPem;
    expect(certificateProblem({ ca, cert: good.certPem, key: good.keyPem })).toBeUndefined();
    // A bundle: the issuing CA need not be the first.
    expect(certificateProblem({ ca: otherCa.certPem + ca, cert: good.certPem, key: good.keyPem })).toBeUndefined();
    expect(certificateProblem({ ca, cert: expired.certPem, key: expired.keyPem })).toMatch(/expired on/);
    expect(certificateProblem({ ca: otherCa.certPem, cert: good.certPem, key: good.keyPem })).toMatch(/not issued by the CA/);
    expect(certificateProblem({ ca, cert: good.certPem, key: other.keyPem })).toMatch(/private key does not belong/);
    expect(certificateProblem({ ca, cert: "not a certificate", key: good.keyPem })).toMatch(/not a PEM certificate/);
    expect(certificateProblem({ ca: "", cert: good.certPem, key: good.keyPem })).toMatch(/no PEM certificate/);
  });
});

describe("the reconnect wait and the process", () => {
  // A child process whose only work is the wait, as an agent's between coordinator restarts.
  async function lone(options: string): Promise<{ code: number | null; stdout: string }> {
    const dir = fx.pki.writeFiles({});
    const script = `${dir}/wait.mts`;
    writeFileSync(script, `import { delay } from ${JSON.stringify(`${ROOT}src/streams/index.ts`)};\nawait delay(300, undefined, ${options});\nprocess.stdout.write("waited\\n");\n`);
    return run(process.execPath, ["--import", TSX, script], { timeoutMs: 60_000 });
  }

  it("keepAlive holds the process open until the wait ends", async () => {
    expect(await lone("{ keepAlive: true }")).toMatchObject({ code: 0, stdout: "waited\n" });
  });

  it("by default the timer is unref()ed, as a server's background waits want (the process may end first)", async () => {
    // Exit code 13: Node's "unsettled top-level await", the field report's agent exit.
    expect(await lone("{}")).toMatchObject({ code: 13, stdout: "" });
  });
});
