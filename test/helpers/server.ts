import { Writable } from "node:stream";
import { buildConfig, type BatonConfig, type ConfigOverrides } from "../../src/config.js";
import { createLogger, type Logger } from "../../src/logging.js";
import { serverCredentials } from "../../src/rpc/index.js";
import { BatonServer } from "../../src/server/index.js";
import type { Store } from "../../src/store/index.js";
import type { TestPki } from "./pki.js";

/** Every JSON log line a test server wrote. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    for (const line of chunk.toString().split("\n")) if (line) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  }
}

/** A fixed journal key (base64 of 32 bytes) for test servers: a real key, for test data only. */
export const TEST_JOURNAL_KEY = Buffer.alloc(32, 0x42).toString("base64");

/** A started server on 127.0.0.1:0 with the test PKI. */
export interface TestServer {
  server: BatonServer;
  config: BatonConfig;
  port: number;
  /** "localhost:<port>": TLS names match localhost. */
  address: string;
  logs: LogCapture;
  logger: Logger;
  stop(): Promise<void>;
}

/**
 * Starts a real server; stop it in afterEach. Its credentials come from the test PKI in
 * memory, or with `fromFiles` from the configured files (renewed files are picked up).
 */
export async function startServer(pki: TestPki, overrides: ConfigOverrides = {}, store?: Store, fromFiles = false): Promise<TestServer> {
  // The journal key is there for tests that switch to the SQLite store (it seals sensitive_input at rest).
  const config = buildConfig({ listen: "127.0.0.1:0", tls: { trustDomain: pki.trustDomain }, store: { kind: "memory", key: TEST_JOURNAL_KEY }, adminListen: "127.0.0.1:0" }, overrides);
  const logs = new LogCapture();
  const logger = createLogger({ level: process.env.BATON_TEST_LOG ?? "debug", destination: logs });
  const server = new BatonServer({ config, logger, ...(store ? { store } : {}) });
  const port = await server.start(fromFiles ? undefined : serverCredentials({ ca: pki.ca.certPem, cert: pki.server.certPem, key: pki.server.keyPem }));
  return { server, config, port, address: `localhost:${port}`, logs, logger, stop: () => server.shutdown({ graceMs: 1000 }) };
}

/** Resolves when the async `check` holds, asking again every few ms; rejects after `timeoutMs`, naming what it waited for. */
export async function waitForAsync(check: () => Promise<boolean>, timeoutMs = 30_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves when `predicate` holds, polling each few ms; rejects after `timeoutMs`. */
export async function waitFor<T>(predicate: () => T | undefined | false, timeoutMs = 30_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
