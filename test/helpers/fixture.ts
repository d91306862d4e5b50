import { afterAll, afterEach, beforeAll } from "vitest";
import type { ChannelCredentials } from "@grpc/grpc-js";
import { createAgent, type AgentOptions, type BatonAgent } from "../../src/agent/index.js";
import { createChannel, type Channel } from "../../src/rpc/index.js";
import { makePki, type TestPki } from "./pki.js";
import type { TestServer } from "./server.js";

/** One test file's set-up: a PKI for the file, at most one server per test, and cleanups. */
export interface Fixture {
  /** The file's PKI (made in beforeAll). */
  readonly pki: TestPki;
  /** The test's server; set it with `fx.srv = await startServer(fx.pki)`, stopped after the test. */
  srv: TestServer;
  /** Runs `fn` after the test (in reverse order of deferral), before the server stops. */
  defer(fn: () => unknown): void;
  /** A channel to the test's server with these credentials, closed after the test. */
  channel(credentials: ChannelCredentials): Channel;
  /** An SDK agent (not yet connected) for the test's server, with a managed_agent certificate for `id`; closed after the test. */
  agent(id: string, options?: Partial<AgentOptions>): Promise<BatonAgent>;
}

/** Registers the hooks of a test file that starts real servers over the test PKI. */
export function useFixture(): Fixture {
  let pki: TestPki | undefined;
  let srv: TestServer | undefined;
  const cleanups: Array<() => unknown> = [];
  beforeAll(async () => {
    pki = await makePki();
  });
  afterAll(() => pki?.cleanup());
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
    await srv?.stop();
    srv = undefined;
  });
  return {
    get pki() {
      if (!pki) throw new Error("the fixture's PKI is made in beforeAll");
      return pki;
    },
    get srv() {
      if (!srv) throw new Error("no server started in this test");
      return srv;
    },
    set srv(value) {
      srv = value;
    },
    defer: (fn) => void cleanups.push(fn),
    channel(credentials) {
      const ch = createChannel(this.srv.address, credentials);
      cleanups.push(() => ch.close());
      return ch;
    },
    async agent(id, options = {}) {
      const a = createAgent({ address: this.srv.address, agentId: id, credentials: await this.pki.credentials("managed_agent", id), ...options });
      cleanups.push(() => a.close());
      return a;
    },
  };
}
