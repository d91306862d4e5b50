import { Command, CommanderError } from "commander";
import { addAgentCommands } from "./agent-commands.js";
import { addOutputOption, type ClientCommandOptions } from "./client-command.js";
import { addCompletionCommand } from "./completion.js";
import { addConfigCommands } from "./config-commands.js";
import { addContextCommands } from "./context-commands.js";
import { addDemoCommand } from "./demo-command.js";
import { addEventsCommand } from "./events-command.js";
import { describeError, EXIT, exitCodeOf, UsageError } from "./exit.js";
import { packageInfo } from "./io.js";
import { addServerCommands } from "./server-commands.js";
import { addTaskCommands } from "./task-commands.js";
import { addWatchCommand } from "./watch-command.js";

/** The `baton` command tree; `env` is where BATON_* and XDG_CONFIG_HOME are read. */
export function buildProgram(env: Record<string, string | undefined>): Command {
  const program = new Command("baton")
    .description("baton: a gRPC coordination server for multi-agent systems, and its operator CLI")
    .version(packageInfo().version, "-V, --version", "print the version")
    .option("--context <name>", "the saved context to use (BATON_CONTEXT; default: the one `baton context use` selected)")
    .option("-s, --address <host:port>", "the coordinator (BATON_ADDRESS; default localhost:50051)")
    .option("--ca <file>", "CA bundle (BATON_CA; default certs/ca.pem)")
    .option("--cert <file>", "operator certificate (BATON_CERT; default certs/operator.pem)")
    .option("--key <file>", "operator key (BATON_KEY; default certs/operator.key)")
    .showSuggestionAfterError(true)
    .showHelpAfterError(true)
    // Titles in lower case ("usage:", "options:"), as baton's messages are.
    .configureHelp({ styleTitle: (title: string) => title.toLowerCase(), sortSubcommands: false, showGlobalOptions: true })
    .exitOverride();
  const options: ClientCommandOptions = { readCommand: addOutputOption, env };
  addServerCommands(program);
  addTaskCommands(program, options);
  addAgentCommands(program, options);
  addEventsCommand(program, options);
  addWatchCommand(program, options);
  addContextCommands(program, options);
  addConfigCommands(program, options);
  addDemoCommand(program, options);
  addCompletionCommand(program);
  // Every subcommand, however deep, exits through the same override (codes 0 and 2, not commander's 1).
  const inherit = (cmd: Command) => {
    for (const sub of cmd.commands) {
      sub.exitOverride().showHelpAfterError(true).showSuggestionAfterError(true);
      inherit(sub);
    }
  };
  inherit(program);
  return program;
}

/** Runs the CLI on `argv` (without node and the script); resolves with the exit code, having printed any error. */
export async function runCli(argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const program = buildProgram(env);
  if (argv.length === 0) {
    process.stderr.write(program.helpInformation());
    return EXIT.usage;
  }
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help, --version, and a group shown its help (`baton task`) end here; commander has printed.
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return EXIT.ok;
      return EXIT.usage;
    }
    process.stderr.write(`baton: ${describeError(err)}\n`);
    if (err instanceof UsageError) process.stderr.write(`(run with --help for usage)\n`);
    return exitCodeOf(err);
  }
}
