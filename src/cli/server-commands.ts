import { COMMANDS } from "./command-table.js";
import type { Command } from "commander";
import { certs } from "./certs.js";
import { journal } from "./journal.js";
import { serve, serveConfig, type ServeFlags } from "./serve.js";
import { kebabKeys, print } from "./io.js";

/** The flags that `serve` shares with `config print`: each sets one configuration path. */
export function addServeFlags(cmd: Command): Command {
  return cmd
    .option("--config <file>", "JSON config file (BATON_CONFIG)")
    .option("--listen <host:port>", "gRPC listen address; port 0 picks one (BATON_LISTEN)")
    .option("--admin-listen <host:port>", 'admin HTTP address for /metrics and /healthz; "" turns it off (BATON_ADMIN_LISTEN)')
    .option("--certs-dir <dir>", "folder of the certificates (BATON_CERTS_DIR)")
    .option("--trust-domain <name>", "SPIFFE trust domain (BATON_TRUST_DOMAIN)")
    .option("--dev-certs", "make development certificates when missing (BATON_DEV_CERTS)")
    .option("--log-level <level>", "fatal, error, warn, info, debug, trace or silent (BATON_LOG_LEVEL)")
    .option("--coordinator-id <id>", "this coordinator's id (BATON_COORDINATOR_ID)")
    .option("--only <participant>", "all, coordinator, resource-manager or performance-monitor (BATON_ONLY)")
    .option("--resource-manager <host:port|registry>", "a Resource Manager in another process, or \"registry\" to find one in etcd (BATON_RESOURCE_MANAGER)")
    .option("--performance-monitor <host:port|registry>", "a Performance Monitor in another process, or \"registry\" to find one in etcd (BATON_PERFORMANCE_MONITOR)")
    .option("--store <url>", 'the journal: "sqlite" (default) or "sqlite:<dataDir>", "memory", "etcd://host:port[,host:port][/prefix]" (BATON_STORE, BATON_ETCD_ENDPOINTS)');
}

/** `baton serve`: runs until SIGINT or SIGTERM; the first drains (server.drain: drainGraceMs), a second forces. */
async function runServe(flags: ServeFlags): Promise<void> {
  const { server, logger } = await serve(serveConfig(flags, process.env));
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, "second signal: exiting now");
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, "shutting down");
      void server.drain().then(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

/** Adds `serve`, `certs` and `journal`: the commands that run on the coordinator's own machine. */
export function addServerCommands(program: Command): void {
  addServeFlags(program.command("serve").description(COMMANDS.serve)).action(async (opts: Record<string, unknown>) => {
    await runServe(kebabKeys(opts) as ServeFlags);
  });

  const certsCmd = program.command("certs").description(COMMANDS.certs);
  const dirOpt = (c: Command) => c.option("--dir <dir>", "certificate folder (BATON_CERTS_DIR; default certs)").option("--trust-domain <name>", "SPIFFE trust domain (BATON_TRUST_DOMAIN; default baton.local)");
  const runCerts = (sub: string) => async (opts: Record<string, unknown>) => print(await certs(sub, kebabKeys(opts), process.env));
  dirOpt(certsCmd.command("init").description("make a certificate authority and the journal key")).option("--force", "replace an existing CA").action(runCerts("init"));
  dirOpt(certsCmd.command("issue").description("issue a certificate for a role and name"))
    .requiredOption("--role <role>", "coordinator, managed_agent, resource_manager, performance_monitor or operator")
    .requiredOption("--name <name>", "the name in the SPIFFE id (an agent's id)")
    .option("--days <n>", "validity in days")
    .option("--dns <names>", "extra DNS names, comma-separated")
    .action(runCerts("issue"));
  dirOpt(certsCmd.command("renew").description("renew a certificate with a new key and serial"))
    .requiredOption("--name <name>", "the certificate's file name")
    .option("--days <n>", "validity in days")
    .option("--revoke-old", "revoke the old serial")
    .action(runCerts("renew"));
  dirOpt(certsCmd.command("revoke").description("add a certificate to the deny list (by --name or --serial)"))
    .option("--name <name>", "the certificate's file name")
    .option("--serial <hex>", "the serial to revoke")
    .option("--reason <text>", "why")
    .action(runCerts("revoke"));
  certsCmd.command("journal-key").description("make the journal key beside the certificates when missing").option("--dir <dir>", "certificate folder (BATON_CERTS_DIR; default certs)").action(runCerts("journal-key"));

  const journalCmd = program.command("journal").description(COMMANDS.journal);
  for (const [sub, what] of [["check", "check that a start would load the journal"], ["adopt", "accept the journal as it is (after a restore)"], ["reset", "move the journal aside; the next start begins empty"]] as const) {
    const c = journalCmd.command(sub).description(what).option("--config <file>", "JSON config file (BATON_CONFIG)").option("--data-dir <dir>", "the journal's folder (BATON_DATA_DIR)");
    if (sub === "reset") c.option("--force", "reset even a journal that would load");
    c.action((opts: Record<string, unknown>) => print(journal(sub, kebabKeys(opts), process.env)));
  }
}
