// A real baton coordinator for the Python SDK's tests and examples, started as
// `node --import tsx test/python/coordinator.ts --dir DIR [--port N] [--agents a,b] [--config JSON]`.
// The first start in DIR makes a CA and certificates (ca.pem, coordinator.*, operator.*, and
// <agent>.pem/.key for each --agents name); a later start in the same DIR reuses them and its
// SQLite journal (DIR/data), so a test can restart the coordinator on the same port. It prints
// one JSON line {"port": N} once serving, and shuts down on SIGTERM.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildConfig, type ConfigOverrides } from "../../src/config.js";
import { createLogger } from "../../src/logging.js";
import { serverCredentials } from "../../src/rpc/index.js";
import { createCertificateAuthority, issueCertificate, type IssuedPem, type RoleName } from "../../src/security/index.js";
import { BatonServer } from "../../src/server/index.js";
import { TEST_JOURNAL_KEY } from "../helpers/server.js";

const { values } = parseArgs({ options: { dir: { type: "string" }, port: { type: "string", default: "0" }, agents: { type: "string", default: "" }, config: { type: "string", default: "{}" } } });
if (!values.dir) throw new Error("--dir is required");
const dir = values.dir;
const trustDomain = "baton.local";
mkdirSync(dir, { recursive: true });

const read = (name: string): IssuedPem => ({ certPem: readFileSync(join(dir, `${name}.pem`), "utf8"), keyPem: readFileSync(join(dir, `${name}.key`), "utf8"), serial: "" });
const write = (name: string, pem: IssuedPem) => {
  writeFileSync(join(dir, `${name}.pem`), pem.certPem);
  writeFileSync(join(dir, `${name}.key`), pem.keyPem, { mode: 0o600 });
};
if (!existsSync(join(dir, "ca.pem"))) write("ca", await createCertificateAuthority({ trustDomain }));
const ca = read("ca");
const issue = async (role: RoleName, name: string) => {
  if (!existsSync(join(dir, `${name}.pem`))) write(name, await issueCertificate({ ca, trustDomain, role, name }));
};
await issue("coordinator", "coordinator");
await issue("operator", "operator");
for (const name of values.agents.split(",").filter(Boolean)) await issue("managed_agent", name);

const overrides = JSON.parse(values.config) as ConfigOverrides;
const config = buildConfig(
  { listen: `127.0.0.1:${values.port}`, tls: { trustDomain }, store: { kind: "sqlite", dataDir: join(dir, "data"), key: TEST_JOURNAL_KEY, synchronous: "NORMAL" }, adminListen: "127.0.0.1:0" },
  overrides,
);
const logger = createLogger({ level: process.env.BATON_TEST_LOG ?? "warn", destination: process.stderr });
const server = new BatonServer({ config, logger });
const server_ = read("coordinator");
const port = await server.start(serverCredentials({ ca: ca.certPem, cert: server_.certPem, key: server_.keyPem }));
process.stdout.write(`${JSON.stringify({ port })}\n`);
const stop = () => void server.shutdown({ graceMs: 500 }).then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
