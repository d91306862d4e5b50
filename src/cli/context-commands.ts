import { COMMANDS } from "./command-table.js";
import type { Command } from "commander";
import { listContexts, loadContext, removeContext, saveContext, selectContext, selectedContext, type CliContext } from "./contexts.js";
import { outputFormat, render, type Printable } from "./output.js";
import type { ClientCommandOptions } from "./client-command.js";
import { UsageError } from "./exit.js";

function contextPrintable(contexts: readonly CliContext[], selected: string | undefined, single = false): Printable<CliContext> {
  return {
    items: contexts,
    single,
    json: (c) => ({ name: c.name, address: c.address, ca: c.ca, cert: c.cert, key: c.key, description: c.description ?? "", selected: c.name === selected }),
    columns: [
      ["", (c) => (c.name === selected ? "*" : "")],
      ["NAME", (c) => c.name],
      ["ADDRESS", (c) => c.address],
      ["CERT", (c) => c.cert],
      ["DESCRIPTION", (c) => c.description ?? ""],
    ],
  };
}

/** Adds `baton context add|use|list|show|remove`: saved addresses and certificates, like `nats context`. */
export function addContextCommands(program: Command, options: ClientCommandOptions): void {
  const { env } = options;
  const context = program.command("context").description(COMMANDS.context);
  // --address, --ca, --cert and --key are the program's own options (every client command takes them): add saves them.
  options
    .readCommand(context.command("add").argument("<name>").description("save a context from --address, --ca, --cert and --key (the global options below); it is selected with --select, or when it is the first"))
    .option("--description <text>", "what it is")
    .option("--select", "use it from now on")
    .action((name: string, _flags: unknown, cmd: Command) => {
      const flags = cmd.optsWithGlobals() as { address?: string; ca?: string; cert?: string; key?: string; description?: string; select?: boolean; output?: string };
      const missing = (["address", "ca", "cert", "key"] as const).filter((f) => !flags[f]).map((f) => `--${f}`);
      if (missing.length) throw new UsageError(`context add needs ${missing.join(", ")}`);
      const first = listContexts(env).length === 0;
      const saved = saveContext({ name, address: flags.address!, ca: flags.ca!, cert: flags.cert!, key: flags.key!, ...(flags.description ? { description: flags.description } : {}) }, env);
      if (flags.select || first) selectContext(name, env);
      process.stdout.write(render(outputFormat(flags.output), contextPrintable([saved], selectedContext(env), true)));
    });
  context.command("use").argument("<name>").description("select a context").action((name: string) => {
    const c = selectContext(name, env);
    process.stdout.write(`using context ${c.name} (${c.address})\n`);
  });
  options.readCommand(context.command("list").description("the contexts saved; * marks the selected one")).action((flags: { output?: string }) => {
    process.stdout.write(render(outputFormat(flags.output), contextPrintable(listContexts(env), env.BATON_CONTEXT ?? selectedContext(env))));
  });
  options.readCommand(context.command("show").argument("[name]", "default: the selected one").description("show one context")).action((name: string | undefined, flags: { output?: string }) => {
    const selected = env.BATON_CONTEXT ?? selectedContext(env);
    const wanted = name ?? selected;
    const found = name ? loadContext(name, env) : listContexts(env).find((c) => c.name === wanted);
    if (!found) {
      process.stdout.write(`no context selected: commands use localhost:50051 and certs/operator.pem (add one with \`baton context add\`)\n`);
      return;
    }
    process.stdout.write(render(outputFormat(flags.output), contextPrintable([found], selected, true)));
  });
  context.command("remove").alias("rm").argument("<name>").description("remove a context").action((name: string) => {
    removeContext(name, env);
    process.stdout.write(`removed context ${name}\n`);
  });
}
