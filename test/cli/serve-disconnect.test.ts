import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { ConnectRequestSchema, Coordinator as CoordinatorService, type ConnectRequest } from "../../gen/baton/v1/session_pb.js";
import { clientCredentials, createChannel, createClient, readTlsFiles } from "../../src/rpc/index.js";
import { ensureDevelopmentCertificates, issueToDirectory } from "../../src/security/index.js";
import { createAsyncQueue } from "../../src/streams/index.js";
import { ROOT, TSX, startBaton, type BatonProcess } from "../helpers/process.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const READY_MS = 60_000; // tsx start-up alone takes seconds on a loaded machine

function credentialsOf(certs: string, name: string) {
  return clientCredentials(readTlsFiles({ caFile: join(certs, "ca.pem"), certFile: join(certs, `${name}.pem`), keyFile: join(certs, `${name}.key`) }));
}

const faults = (p: BatonProcess) => p.lines.filter((l) => l.level === "error" || l.level === "fatal");

describe("baton serve: a peer going away is not a server error", () => {
  it("an agent process killed mid-session, a cancelled Connect and a cancelled WatchEvents log nothing at error level", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "baton-disconnect-"));
    cleanups.push(() => rmSync(cwd, { recursive: true, force: true }));
    const certs = join(cwd, "certs");
    await ensureDevelopmentCertificates({ dir: certs });
    for (const name of ["a1", "a2"]) await issueToDirectory({ dir: certs, role: "managed_agent", name });
    const server = startBaton(["serve", "--listen", "127.0.0.1:0", "--log-level", "debug"], { cwd, env: { BATON_ADMIN_LISTEN: "127.0.0.1:0", BATON_STORE: "memory" } });
    cleanups.push(() => server.stop("SIGKILL"));
    const serving = await server.waitForLine((l) => l.msg === "baton serving", READY_MS);
    const address = `localhost:${String(serving.listen).split(":").pop()}`;

    // 1. An agent process that dies without closing its stream, frames of it still unread: the kernel closes the socket.
    const agent = spawn(process.execPath, ["--import", TSX, join(ROOT, "test/cli/fixtures/connected-agent.ts"), address, certs, "a1", "50"], { stdio: ["ignore", "pipe", "inherit"] });
    cleanups.push(() => agent.exitCode === null && agent.signalCode === null && agent.kill("SIGKILL"));
    let out = "";
    agent.stdout.on("data", (d: Buffer) => (out += d.toString()));
    while (!out.includes("welcome")) await once(agent.stdout, "data");
    const exited = once(agent, "exit");
    agent.kill("SIGKILL");
    await exited;
    await server.waitForLine((l) => l.msg === "agent session closed" && l.agent_id === "a1", READY_MS);

    // 2. An agent that cancels its Connect call mid-stream (RST_STREAM CANCEL).
    const channel = createChannel(address, credentialsOf(certs, "a2"));
    cleanups.push(() => channel.close());
    const outgoing = createAsyncQueue<ConnectRequest>({ capacity: 10, overflow: "error", name: "test agent" });
    outgoing.push(create(ConnectRequestSchema, { kind: { case: "hello", value: { agentId: "a2", capabilities: ["python"] } } }));
    const stop = new AbortController();
    const responses = createClient(CoordinatorService, channel).connect(outgoing, { signal: stop.signal })[Symbol.asyncIterator]();
    expect((await responses.next()).value?.kind.case).toBe("welcome");
    stop.abort();
    await expect(responses.next()).rejects.toBeDefined();
    await server.waitForLine((l) => l.msg === "agent session closed" && l.agent_id === "a2", READY_MS);

    // 3. An operator that stops watching events mid-stream.
    const operator = createChannel(address, credentialsOf(certs, "operator"));
    cleanups.push(() => operator.close());
    const unwatch = new AbortController();
    const watched = createClient(Control, operator).watchEvents({ afterCursor: 1n }, { signal: unwatch.signal })[Symbol.asyncIterator]();
    expect((await watched.next()).done).toBe(false);
    unwatch.abort();
    await expect(watched.next()).rejects.toBeDefined();

    // The server is still healthy and says so on a clean stop; only then are all its lines in.
    expect(await server.stop("SIGTERM")).toBe(0);
    expect(faults(server)).toEqual([]);
  }, 180_000);
});
