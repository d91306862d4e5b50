import type { Command } from "commander";
import type { ClientCommandOptions } from "./client-command.js";

/** The top-level commands: their one-line descriptions (for help before a group is loaded) and the module that builds them. */
export const COMMANDS = {
  serve: "run the coordinator (with the Resource Manager and Performance Monitor unless --only says otherwise)",
  certs: "make and manage the certificates of a baton deployment",
  journal: "inspect, adopt or reset the journal that `baton serve` would load",
  task: "submit, inspect, explain, cancel and resubmit tasks",
  agent: "inspect and drain managed agents",
  round: "inspect coordination rounds",
  events: "stream state changes as they happen, by topic pattern, resumable (Ctrl-C to stop)",
  watch: "a live view of agents, tasks with their progress, and rounds; redrawn in place on a terminal, one line per event otherwise (Ctrl-C to stop)",
  context: "save how to reach a coordinator once (in $XDG_CONFIG_HOME/baton, else ~/.config/baton); BATON_CONTEXT or --context pick one, flags override it",
  config: "the effective configuration and where each value came from, a config file's check, its JSON Schema",
  demo: "run a coordinator, agents in their own processes and a stream of tasks (coalitions, GPUs, one agent killed midway), shown live, then report what happened; cleans up after itself",
  completion: 'print a shell completion script: eval "$(baton completion bash)"',
} as const;

/** A top-level command's name. */
export type CommandName = keyof typeof COMMANDS;

type Adder = (program: Command, options: ClientCommandOptions) => void;

/**
 * The modules that build the commands, loaded only for the command being run: `baton task
 * list` never loads the server, and `--version` loads none of them (start-up time).
 */
export const GROUPS: ReadonlyArray<{ names: readonly CommandName[]; load(): Promise<Adder> }> = [
  { names: ["serve", "certs", "journal"], load: async () => (await import("./server-commands.js")).addServerCommands },
  { names: ["task"], load: async () => (await import("./task-commands.js")).addTaskCommands },
  { names: ["agent", "round"], load: async () => (await import("./agent-commands.js")).addAgentCommands },
  { names: ["events"], load: async () => (await import("./events-command.js")).addEventsCommand },
  { names: ["watch"], load: async () => (await import("./watch-command.js")).addWatchCommand },
  { names: ["context"], load: async () => (await import("./context-commands.js")).addContextCommands },
  { names: ["config"], load: async () => (await import("./config-commands.js")).addConfigCommands },
  { names: ["demo"], load: async () => (await import("./demo-command.js")).addDemoCommand },
  { names: ["completion"], load: async () => (await import("./completion.js")).addCompletionCommand },
];
