import { parseArgs } from "node:util";
import { certs, journal, serve, serveConfig, UsageError } from "./cli/index.js";
import { ConfigError } from "./config.js";

const USAGE = `baton: a gRPC coordination server for multi-agent systems

usage:
  baton serve [--listen host:port] [--admin-listen host:port|""]
              [--config file.json] [--certs-dir dir]
              [--trust-domain name] [--dev-certs] [--log-level level]
              [--coordinator-id id]
              [--only all|coordinator|resource-manager|performance-monitor]
              [--resource-manager host:port] [--performance-monitor host:port]
  baton certs init  [--dir certs] [--trust-domain baton.local] [--force]
  baton certs issue --role <role> --name <name> [--dir certs] [--days n] [--dns a,b]
  baton certs renew  --name <name> [--dir certs] [--days n] [--revoke-old]
  baton certs revoke (--name <name> | --serial <hex>) [--dir certs] [--reason text]
  baton certs journal-key [--dir certs]
  baton journal check|adopt [--config file.json] [--data-dir dir]
  baton journal reset [--config file.json] [--data-dir dir] [--force]

roles: coordinator, managed_agent, resource_manager, performance_monitor, operator
environment: BATON_CONFIG, BATON_LISTEN, BATON_CERTS_DIR, BATON_TRUST_DOMAIN,
             BATON_LOG_LEVEL, BATON_DEV_CERTS, ... (see README)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  if (command === "serve") {
    const { values } = parseArgs({
      args: rest,
      options: {
        config: { type: "string" },
        listen: { type: "string" },
        "admin-listen": { type: "string" },
        "certs-dir": { type: "string" },
        "trust-domain": { type: "string" },
        "dev-certs": { type: "boolean" },
        "log-level": { type: "string" },
        "coordinator-id": { type: "string" },
        only: { type: "string" },
        "resource-manager": { type: "string" },
        "performance-monitor": { type: "string" },
      },
      strict: true,
    });
    const { server, logger } = await serve(serveConfig(values, process.env));
    // Only main handles signals: the first stops gracefully, a second forces.
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = (signal: NodeJS.Signals) => {
        if (stopping) {
          logger.warn({ signal }, "second signal: exiting now");
          process.exit(1);
        }
        stopping = true;
        logger.info({ signal }, "shutting down");
        void server.shutdown().then(resolve);
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    return 0;
  }
  if (command === "certs") {
    const [sub, ...args] = rest;
    const { values } = parseArgs({
      args,
      options: {
        dir: { type: "string" },
        "trust-domain": { type: "string" },
        force: { type: "boolean" },
        role: { type: "string" },
        name: { type: "string" },
        days: { type: "string" },
        dns: { type: "string" },
        "revoke-old": { type: "boolean" },
        serial: { type: "string" },
        reason: { type: "string" },
      },
      strict: true,
    });
    for (const line of await certs(sub, values, process.env)) process.stdout.write(`${line}\n`);
    return 0;
  }
  if (command === "journal") {
    const [sub, ...args] = rest;
    const { values } = parseArgs({ args, options: { config: { type: "string" }, "data-dir": { type: "string" }, force: { type: "boolean" } }, strict: true });
    for (const line of journal(sub, values, process.env)) process.stdout.write(`${line}\n`);
    return 0;
  }
  throw new UsageError(`unknown command ${JSON.stringify(command)}`);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const usage = err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    process.stderr.write(`baton: ${(err as Error).message ?? String(err)}\n`);
    if (usage) process.stderr.write(`\n${USAGE}`);
    process.exitCode = usage ? 2 : err instanceof ConfigError ? 78 : 1;
  },
);
