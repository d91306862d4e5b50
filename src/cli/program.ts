import { Command, CommanderError } from "commander";
import type { ClientCommandOptions } from "./client-command.js";
import { addOutputOption } from "./output-option.js";
import { COMMANDS, GROUPS } from "./command-table.js";
import { describeError, EXIT, exitCodeOf, UsageError } from "./exit.js";
import { packageInfo } from "./io.js";

// Options of the program that take a value: the token after them is not the command.
const VALUE_OPTIONS = new Set(["--context", "-s", "--address", "--ca", "--cert", "--key"]);

/** The top-level command argv names ("task" in `baton --context dev task list`), if any. */
function commandOf(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (VALUE_OPTIONS.has(a)) i++;
    else if (a === "help") return argv[i + 1];
    else if (!a.startsWith("-")) return a;
  }
  return undefined;
}

/**
 * The `baton` command tree; `env` is where BATON_* and XDG_CONFIG_HOME are read. Only the
 * group of the command `argv` runs is built in full (all of them for `completion`, or without
 * argv); the others are listed by name and description for help and suggestions.
 */
export async function buildProgram(env: Record<string, string | undefined>, argv?: readonly string[]): Promise<Command> {
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
  const wanted = argv ? commandOf(argv) : undefined;
  const all = argv === undefined || wanted === "completion";
  for (const group of GROUPS) {
    if (all || group.names.some((n) => n === wanted)) (await group.load())(program, options);
    else for (const name of group.names) program.command(name).description(COMMANDS[name]).allowUnknownOption().allowExcessArguments();
  }
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
  const program = await buildProgram(env, argv);
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
