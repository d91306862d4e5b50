import type { Command } from "commander";
import type { ClientCommandOptions } from "./client-command.js";

/** Adds `baton demo`. */
export function addDemoCommand(program: Command, _options: ClientCommandOptions): void {
  program.command("demo").description("a coordinator, agents in their own processes and a stream of tasks, shown live");
}
